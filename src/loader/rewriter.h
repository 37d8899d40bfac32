// Finds the `syscall` instructions of an executable so they can be rewritten
// into `out dx, eax; nop` (EF 90), which exits to the VMM.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "loader/elf.h"

namespace vessel::loader {

inline constexpr uint8_t kSyscall[2] = {0x0f, 0x05};
inline constexpr uint8_t kSyscallReplacement[2] = {0xef, 0x90};  // out dx, eax; nop

// File offsets of every `syscall` in the executable segments, found by
// decoding instruction by instruction (a linear sweep with Zydis), never by a
// byte search: an 0F 05 inside another instruction's bytes is left alone.
Result<std::vector<uint64_t>> find_syscalls(std::span<const uint8_t> file, const ElfImage& image);

// A 128-bit content hash, as 32 hex digits.
std::string content_hash(std::span<const uint8_t> file);

// On-disk cache (little-endian: "VSLRW001", file size, count, offsets) of find_syscalls() results keyed by content hash, so a second
// start of the same file does not decode again. Entries are validated on load
// (each offset must hold a `syscall` inside an executable segment); a bad
// entry is ignored and rebuilt.
class RewriteCache {
public:
    // `dir` empty: the default ($VESSEL_CACHE_DIR, else $XDG_CACHE_HOME/vessel,
    // else $HOME/.cache/vessel). An unusable directory disables caching.
    explicit RewriteCache(std::string dir = {});

    std::optional<std::vector<uint64_t>> load(const std::string& hash, std::span<const uint8_t> file,
                                              const ElfImage& image) const;
    void store(const std::string& hash, uint64_t file_size, const std::vector<uint64_t>& offsets) const;
    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
};

// Identifies a file on disk without reading it (stat fields). Used as a
// second, cheaper cache key: a warm start then never hashes the whole file.
struct FileIdentity {
    uint64_t dev = 0, ino = 0, size = 0;
    int64_t mtime_ns = 0, ctime_ns = 0;
    std::string key() const;  // "s" + 32 hex digits
    static FileIdentity of(const struct stat& st);
};

// A whole rewritten executable, cached under its file identity
// (KEY.img): one header page, then the file's bytes with every site already
// rewritten. Mapping it from kImageHeaderSize starts a program without
// decoding, validating or copying a page; the pages are shared by every VM
// running that file. Header (little-endian): "VSLIMG01", file size, site
// count, XXH3-64 of the 24 bytes before it.
inline constexpr uint64_t kImageHeaderSize = 4096;
struct CachedImage {
    Fd fd;               // map from kImageHeaderSize
    uint64_t sites = 0;  // how many syscalls were rewritten
};
std::optional<CachedImage> open_cached_image(const RewriteCache& cache, const FileIdentity& identity);
// Writes KEY.img: `file` with `offsets` rewritten (file offsets from
// syscall_sites()). A failure only means the next start rewrites again.
void store_cached_image(const RewriteCache& cache, const FileIdentity& identity, std::span<const uint8_t> file,
                        const std::vector<uint64_t>& offsets);

// find_syscalls() through the cache: by file identity first, then by content
// hash, then by decoding (and storing under both keys). `cache_hit`
// (optional) reports whether the decoder was skipped.
Result<std::vector<uint64_t>> syscall_sites(std::span<const uint8_t> file, const ElfImage& image,
                                            const RewriteCache& cache, const FileIdentity* identity = nullptr,
                                            bool* cache_hit = nullptr);

}  // namespace vessel::loader
