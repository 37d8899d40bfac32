// Finds the `syscall` and `cpuid` instructions of an executable and
// rewrites them.
//
// Every `syscall` becomes `out dx, eax; nop` (EF 90), which exits to the VMM,
// unless the instructions before it leave room for a jump to a per-site stub.
// The stub does what the replaced instructions did and enters the guest-side
// system-call entry (thin/guest_entry.h), which answers some calls without
// an exit and sends the rest to the VMM:
//   kMovSite:    mov $imm32,%eax; syscall          -> jmp stub; nop; nop
//   kJccXorSite: jcc rel8; xor %eax,%eax; syscall  -> jmp stub; nop
//   kCopySite:   I1 [I2 [I3]]; syscall             -> jmp stub; nop...
// where I1..I3 (3 to 18 bytes) neither branch nor address memory relative to
// RIP, so the stub runs copies of them unchanged.
// Nothing is pushed on the guest's stack (RCX carries the return address, as
// `syscall` leaves it), so red zones are safe; a site is only used when no
// direct branch lands inside the replaced bytes. The stubs live in one
// read+exec area at the page after the image's highest address.
//
// A `cpuid` site (kCpuidSite set) has the same shapes, and its stub enters
// the guest-side CPUID instead, with the return address in RBX (an output
// of `cpuid`, like RCX of `syscall`): the guest then gets the host's answer
// without leaving the VM (arch/x86/host_cpuid.h). A `cpuid` without room
// for a jump is left as it is (it runs, slowly, on the real CPU).
#pragma once

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "abi/thin_guest.h"
#include "base/fd.h"
#include "base/result.h"
#include "loader/elf.h"

namespace vessel::loader {

inline constexpr uint8_t kSyscall[2] = {0x0f, 0x05};
inline constexpr uint8_t kCpuid[2] = {0x0f, 0xa2};
inline constexpr uint8_t kExitReplacement[2] = {0xef, 0x90};  // out dx, eax; nop

// A site: its file offset, with its kind in the top two bits, bit 61 set
// for a `cpuid` site and, for a kCopySite, the number of bytes copied into
// its stub in bits 56-60.
enum SiteKind : uint64_t { kExitSite = 0, kMovSite = 1, kJccXorSite = 2, kCopySite = 3 };
inline constexpr unsigned kSiteKindShift = 62, kSiteCpuidShift = 61, kSiteCopyShift = 56;
inline constexpr uint64_t kCpuidSite = 1ull << kSiteCpuidShift;
inline constexpr unsigned kCopyMin = 3, kCopyMax = 18;  // bytes before the instruction a copy site moves
inline uint64_t site_offset(uint64_t site) { return site & ((1ull << kSiteCopyShift) - 1); }
inline SiteKind site_kind(uint64_t site) { return static_cast<SiteKind>(site >> kSiteKindShift); }
inline bool site_is_cpuid(uint64_t site) { return site & kCpuidSite; }
inline unsigned site_copied(uint64_t site) { return (site >> kSiteCopyShift) & 0x1f; }
inline uint64_t make_site(uint64_t offset, SiteKind kind, unsigned copied = 0) {
    return offset | (uint64_t{copied} << kSiteCopyShift) | (uint64_t{kind} << kSiteKindShift);
}

// The bytes a site replaces, ending with the syscall (or cpuid).
unsigned patch_length(uint64_t site);
// Do the bytes before the instruction at file offset `off` have the shape
// `site` says, and is the instruction the one it says? (For a copy site only
// the length can be checked without decoding.) A cpuid site is never an
// exit site.
bool has_shape(std::span<const uint8_t> code, uint64_t off, uint64_t site);

// Where the stubs jump and what their mapping is called: the thin ABI's.
using abi::kGuestCpuidPointer;
using abi::kGuestHandlerPointer;
using abi::kStubAreaName;
inline constexpr uint64_t kStubSlot = 32;

// Every `syscall`, and every `cpuid` with room for a jump, in the executable
// segments, in file order, found by decoding instruction by instruction (a
// linear sweep with Zydis), never by a byte search: an 0F 05 or 0F A2
// inside another instruction's bytes is left alone. In decoder.cc, which
// only the `vessel-decode` helper and the tests link: `vessel` runs it
// through decode_in_helper() (decode_helper.h).
Result<std::vector<uint64_t>> find_sites(std::span<const uint8_t> file, const ElfImage& image);
// What finds the sites on a cache miss: find_sites, or the helper.
using Decoder = std::function<Result<std::vector<uint64_t>>(std::span<const uint8_t>, const ElfImage&)>;

// The stub area for `sites` (kStubSlot bytes per stub site, page-aligned;
// empty when there is none) and its address relative to the image: the
// first page after image.highest. Deterministic, so a cached copy is valid.
std::vector<uint8_t> build_stubs(std::span<const uint8_t> file, const ElfImage& image,
                                 const std::vector<uint64_t>& sites);
inline uint64_t stub_area_vaddr(const ElfImage& image) { return image.highest; }

// Calls f(file_offset, bytes, length) for each site's replacement.
void for_each_patch(const ElfImage& image, const std::vector<uint64_t>& sites,
                    const std::function<void(uint64_t, const uint8_t*, unsigned)>& f);

// A 128-bit content hash, as 32 hex digits.
std::string content_hash(std::span<const uint8_t> file);

// A list of sites in the cache's entry format (below): what the helper
// writes, and what read_sites() reads back.
std::vector<uint8_t> encode_sites(uint64_t file_size, const std::vector<uint64_t>& sites);
// Reads an entry from `fd` and checks it against `file` like a cache entry
// (every site's bytes inside an executable segment and of its kind's
// shape); nullopt when anything is off.
std::optional<std::vector<uint64_t>> read_sites(int fd, std::span<const uint8_t> file, const ElfImage& image);

// On-disk cache (little-endian: "VSLRW003", file size, count, sites) of
// find_sites() results keyed by content hash, so a second start of the same
// file does not decode again. Entries are validated on load (each offset
// must hold a `syscall` or `cpuid`, as its site says, inside an executable
// segment); a bad entry is ignored and rebuilt.
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
// running that file (through the page cache). Header (little-endian):
// "VSLIMG04", file size, site count, stub area size, the file offsets of
// the first four "/proc/self/exe" strings in read-only segments (0: none),
// XXH3-64 of the 64 bytes before it. The stub area (build_stubs()) follows
// the file's bytes.
inline constexpr uint64_t kImageHeaderSize = 4096;
using abi::kSelfExeStrings;
struct CachedImage {
    Fd fd;               // map from kImageHeaderSize
    uint64_t sites = 0;  // how many sites were rewritten
    std::vector<uint8_t> stubs;
    // File offsets of "/proc/self/exe" strings in read-only segments (0: none).
    std::array<uint64_t, kSelfExeStrings> self_exe{};
};
std::optional<CachedImage> open_cached_image(const RewriteCache& cache, const FileIdentity& identity);
// The virtual addresses (plus `load_bias`) of the image's "/proc/self/exe"
// strings, each in its read-only segment (0: none).
std::array<uint64_t, kSelfExeStrings> self_exe_addresses(const CachedImage& cached, const ElfImage& image,
                                                         uint64_t load_bias);
// Writes KEY.img: `file` with `offsets` rewritten (file offsets from
// syscall_sites()). A failure only means the next start rewrites again.
// `stubs`: build_stubs() of the same sites.
void store_cached_image(const RewriteCache& cache, const FileIdentity& identity, std::span<const uint8_t> file,
                        const ElfImage& image, const std::vector<uint64_t>& sites, std::span<const uint8_t> stubs);

// The sites through the cache: by file identity first, then by content
// hash, then by `decode` (and storing under both keys). `cache_hit`
// (optional) reports whether the decoder was skipped.
Result<std::vector<uint64_t>> syscall_sites(std::span<const uint8_t> file, const ElfImage& image,
                                            const RewriteCache& cache, const Decoder& decode,
                                            const FileIdentity* identity = nullptr, bool* cache_hit = nullptr);

}  // namespace vessel::loader
