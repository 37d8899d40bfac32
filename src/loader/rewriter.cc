#include "loader/rewriter.h"

#include <Zydis/Zydis.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL  // header-only: no library to load at start
#include <xxhash.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/cache_dir.h"
#include "base/fd.h"

namespace vessel::loader {
namespace {

constexpr char kMagic[8] = {'V', 'S', 'L', 'R', 'W', '0', '0', '1'};

// Written so that no sum can wrap: offsets come from cache files on disk.
bool in_exec_segment(const ElfImage& image, uint64_t off, uint64_t len) {
    for (const auto& s : image.segments)
        if ((s.flags & PF_X) && off >= s.offset && off - s.offset <= s.filesz && len <= s.filesz - (off - s.offset))
            return true;
    return false;
}

// Zydis is loaded on first use: a warm start (rewrite cache hit) never maps
// it, which keeps process start-up short.
struct Zydis {
    decltype(&ZydisDecoderInit) init = nullptr;
    decltype(&ZydisDecoderEnableMode) enable_mode = nullptr;
    decltype(&ZydisDecoderDecodeInstruction) decode = nullptr;
};

Result<Zydis> load_zydis() {
    static constexpr const char* kLibrary = "libZydis.so.4.0";
    void* lib = ::dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return fail(std::string("cannot load the x86 decoder (") + ::dlerror() + "); install libzydis4");
    Zydis z;
    z.init = reinterpret_cast<decltype(z.init)>(::dlsym(lib, "ZydisDecoderInit"));
    z.enable_mode = reinterpret_cast<decltype(z.enable_mode)>(::dlsym(lib, "ZydisDecoderEnableMode"));
    z.decode = reinterpret_cast<decltype(z.decode)>(::dlsym(lib, "ZydisDecoderDecodeInstruction"));
    if (!z.init || !z.enable_mode || !z.decode) return fail(std::string(kLibrary) + ": missing decoder symbols");
    return z;
}

}  // namespace

Result<std::vector<uint64_t>> find_syscalls(std::span<const uint8_t> file, const ElfImage& image) {
    static const Result<Zydis> zydis = load_zydis();
    if (!zydis) return std::unexpected(zydis.error());
    ZydisDecoder decoder;
    zydis->init(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    zydis->enable_mode(&decoder, ZYDIS_DECODER_MODE_MINIMAL, ZYAN_TRUE);
    std::vector<uint64_t> sites;
    for (const auto& s : image.segments) {
        if (!(s.flags & PF_X)) continue;
        const uint8_t* code = file.data() + s.offset;
        uint64_t pos = 0;
        while (pos < s.filesz) {
            ZydisDecodedInstruction insn;
            if (ZYAN_SUCCESS(zydis->decode(&decoder, nullptr, code + pos, s.filesz - pos, &insn))) {
                if (insn.mnemonic == ZYDIS_MNEMONIC_SYSCALL && insn.length == 2 &&
                    std::memcmp(code + pos, kSyscall, 2) == 0)
                    sites.push_back(s.offset + pos);
                pos += insn.length;
            } else {
                ++pos;  // data or padding inside the code: resynchronise byte by byte
            }
        }
    }
    return sites;
}

std::string content_hash(std::span<const uint8_t> file) {
    XXH128_hash_t h = XXH3_128bits(file.data(), file.size());
    char buf[33];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                  static_cast<unsigned long long>(h.low64));
    return buf;
}

RewriteCache::RewriteCache(std::string dir) : dir_(std::move(dir)) {
    if (dir_.empty() && !cache_dir().empty()) dir_ = cache_dir() + "/rewrite";
}

std::optional<std::vector<uint64_t>> RewriteCache::load(const std::string& hash, std::span<const uint8_t> file,
                                                        const ElfImage& image) const {
    if (dir_.empty()) return std::nullopt;
    Fd fd(::open((dir_ + "/" + hash).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    struct {
        char magic[8];
        uint64_t file_size;
        uint64_t count;
    } header;
    if (::read(fd.get(), &header, sizeof header) != sizeof header) return std::nullopt;
    if (std::memcmp(header.magic, kMagic, 8) != 0 || header.file_size != file.size() ||
        header.count > file.size() / 2)
        return std::nullopt;
    std::vector<uint64_t> offsets(header.count);
    ssize_t want = static_cast<ssize_t>(header.count * sizeof(uint64_t));
    if (want && ::read(fd.get(), offsets.data(), want) != want) return std::nullopt;
    for (uint64_t off : offsets)
        if (!in_exec_segment(image, off, 2) || std::memcmp(file.data() + off, kSyscall, 2) != 0)
            return std::nullopt;
    return offsets;
}

void RewriteCache::store(const std::string& hash, uint64_t file_size,
                         const std::vector<uint64_t>& offsets) const {
    if (dir_.empty() || !make_dirs(dir_)) return;
    std::vector<uint8_t> buf(24 + offsets.size() * 8);
    uint64_t count = offsets.size();
    std::memcpy(buf.data(), kMagic, 8);
    std::memcpy(buf.data() + 8, &file_size, 8);
    std::memcpy(buf.data() + 16, &count, 8);
    if (count) std::memcpy(buf.data() + 24, offsets.data(), count * 8);
    // Atomic, so a concurrent reader sees the old entry or the new one; a
    // failure only means the next start decodes again.
    (void)write_file_atomic(dir_ + "/" + hash, buf.data(), buf.size());
}

FileIdentity FileIdentity::of(const struct stat& st) {
    return {.dev = st.st_dev,
            .ino = st.st_ino,
            .size = static_cast<uint64_t>(st.st_size),
            .mtime_ns = st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec,
            .ctime_ns = st.st_ctim.tv_sec * 1'000'000'000ll + st.st_ctim.tv_nsec};
}

std::string FileIdentity::key() const {
    const uint64_t fields[5] = {dev, ino, size, static_cast<uint64_t>(mtime_ns), static_cast<uint64_t>(ctime_ns)};
    return "s" + content_hash({reinterpret_cast<const uint8_t*>(fields), sizeof fields});
}

Result<std::vector<uint64_t>> syscall_sites(std::span<const uint8_t> file, const ElfImage& image,
                                            const RewriteCache& cache, const FileIdentity* identity,
                                            bool* cache_hit) {
    if (cache_hit) *cache_hit = true;
    std::string id_key = identity ? identity->key() : std::string();
    // Entries are validated against the file on load, so a stale identity
    // entry can at worst miss; it can never patch a byte that is not a syscall.
    if (identity)
        if (auto cached = cache.load(id_key, file, image)) return *cached;
    std::string hash = content_hash(file);
    if (auto cached = cache.load(hash, file, image)) {
        if (identity) cache.store(id_key, file.size(), *cached);
        return *cached;
    }
    if (cache_hit) *cache_hit = false;
    auto sites = find_syscalls(file, image);
    if (!sites) return sites;
    cache.store(hash, file.size(), *sites);
    if (identity) cache.store(id_key, file.size(), *sites);
    return sites;
}

namespace {

constexpr char kImageMagic[8] = {'V', 'S', 'L', 'I', 'M', 'G', '0', '1'};

struct ImageHeader {
    char magic[8];
    uint64_t file_size;
    uint64_t sites;
    uint64_t check;  // XXH3-64 of the fields above
};
static_assert(sizeof(ImageHeader) == 32);

uint64_t header_check(const ImageHeader& h) { return XXH3_64bits(&h, offsetof(ImageHeader, check)); }

std::string image_path(const RewriteCache& cache, const FileIdentity& identity) {
    return cache.dir() + "/" + identity.key() + ".img";
}

}  // namespace

std::optional<CachedImage> open_cached_image(const RewriteCache& cache, const FileIdentity& identity) {
    if (cache.dir().empty()) return std::nullopt;
    Fd fd(::open(image_path(cache, identity).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return std::nullopt;
    ImageHeader h;
    struct stat st;
    if (::pread(fd.get(), &h, sizeof h, 0) != sizeof h || ::fstat(fd.get(), &st) != 0) return std::nullopt;
    if (std::memcmp(h.magic, kImageMagic, 8) != 0 || h.check != header_check(h) || h.file_size != identity.size ||
        static_cast<uint64_t>(st.st_size) != kImageHeaderSize + identity.size || h.sites > identity.size / 2)
        return std::nullopt;
    return CachedImage{std::move(fd), h.sites};
}

void store_cached_image(const RewriteCache& cache, const FileIdentity& identity, std::span<const uint8_t> file,
                        const std::vector<uint64_t>& offsets) {
    if (cache.dir().empty() || file.size() != identity.size || !make_dirs(cache.dir())) return;
    std::vector<uint8_t> buf(kImageHeaderSize + file.size());
    ImageHeader h{};
    std::memcpy(h.magic, kImageMagic, 8);
    h.file_size = file.size();
    h.sites = offsets.size();
    h.check = header_check(h);
    std::memcpy(buf.data(), &h, sizeof h);
    uint8_t* body = buf.data() + kImageHeaderSize;
    std::memcpy(body, file.data(), file.size());
    for (uint64_t off : offsets)
        if (file.size() >= 2 && off <= file.size() - 2) std::memcpy(body + off, kSyscallReplacement, 2);
    (void)write_file_atomic(image_path(cache, identity), buf.data(), buf.size());
}

}  // namespace vessel::loader
