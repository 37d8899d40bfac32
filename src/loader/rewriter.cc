#include "loader/rewriter.h"

#include <sys/stat.h>
#include <unistd.h>
#define XXH_INLINE_ALL  // header-only: no library to load at start
#include <xxhash.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/cache_dir.h"
#include "base/fd.h"
#include "base/safe_file.h"

namespace vessel::loader {
namespace {

constexpr char kMagic[8] = {'V', 'S', 'L', 'R', 'W', '0', '0', '3'};

// Written so that no sum can wrap: offsets come from cache files on disk.
bool in_exec_segment(const ElfImage& image, uint64_t off, uint64_t len) {
    for (const auto& s : image.segments)
        if ((s.flags & PF_X) && off >= s.offset && off - s.offset <= s.filesz && len <= s.filesz - (off - s.offset))
            return true;
    return false;
}

}  // namespace

unsigned patch_length(uint64_t site) {
    switch (site_kind(site)) {
        case kMovSite: return 7;
        case kJccXorSite: return 6;
        case kCopySite: return site_copied(site) + 2;
        default: return 2;
    }
}

bool has_shape(std::span<const uint8_t> code, uint64_t off, uint64_t site) {
    const unsigned len = patch_length(site);
    const uint8_t* insn = site_is_cpuid(site) ? kCpuid : kSyscall;
    if (off < len - 2 || off + 2 > code.size() || std::memcmp(&code[off], insn, 2) != 0) return false;
    const uint8_t* p = &code[off + 2 - len];
    switch (site_kind(site)) {
        case kExitSite: return site_copied(site) == 0 && !site_is_cpuid(site);
        case kMovSite: return p[0] == 0xb8 && site_copied(site) == 0;  // mov $imm32,%eax
        case kJccXorSite:                                              // jcc rel8; xor %eax,%eax
            return (p[0] & 0xf0) == 0x70 && (p[2] == 0x31 || p[2] == 0x33) && p[3] == 0xc0 && site_copied(site) == 0;
        case kCopySite: return site_copied(site) >= kCopyMin && site_copied(site) <= kCopyMax;
    }
    return false;
}

namespace {

// Virtual address (before any load bias) of a file offset in a segment.
uint64_t vaddr_of(const ElfImage& image, uint64_t off) {
    for (const auto& s : image.segments)
        if (off >= s.offset && off - s.offset < s.filesz) return s.vaddr + (off - s.offset);
    return 0;
}

void put32(uint8_t*& p, uint64_t v) {
    uint32_t x = static_cast<uint32_t>(v);
    std::memcpy(p, &x, 4);
    p += 4;
}

}  // namespace

std::vector<uint8_t> build_stubs(std::span<const uint8_t> file, const ElfImage& image,
                                 const std::vector<uint64_t>& sites) {
    std::vector<uint8_t> area;
    const uint64_t base = stub_area_vaddr(image);
    for (uint64_t site : sites) {
        const SiteKind kind = site_kind(site);
        if (kind == kExitSite) continue;
        const uint64_t off = site_offset(site), site_va = vaddr_of(image, off);
        const uint64_t stub_va = base + area.size();
        area.resize(area.size() + kStubSlot, 0xcc);  // int3 after the code
        uint8_t* p = area.data() + area.size() - kStubSlot;
        if (kind == kMovSite) {
            *p++ = 0xb8;  // mov $imm32,%eax, as at the site
            std::memcpy(p, &file[off - 4], 4);
            p += 4;
        } else if (kind == kCopySite) {
            const unsigned n = site_copied(site);  // the instructions before the syscall, unchanged
            std::memcpy(p, &file[off - n], n);
            p += n;
        } else {
            const uint8_t cc = file[off - 4] & 0x0f;
            const int8_t rel8 = static_cast<int8_t>(file[off - 3]);
            const uint64_t target = site_va - 2 + static_cast<int64_t>(rel8);  // the jcc's own target
            *p++ = 0x0f;                                                       // jcc rel32
            *p++ = static_cast<uint8_t>(0x80 | cc);
            put32(p, target - (stub_va + 6));
            *p++ = 0x31;  // xor %eax,%eax
            *p++ = 0xc0;
        }
        const bool cpuid = site_is_cpuid(site);
        const uint64_t lea_end = stub_va + (p - (area.data() + area.size() - kStubSlot)) + 7;
        *p++ = 0x48;  // lea after_site(%rip),%rcx (%rbx for cpuid): the return address, as syscall leaves it in RCX
        *p++ = 0x8d;
        *p++ = cpuid ? 0x1d : 0x0d;
        put32(p, site_va + 2 - lea_end);
        *p++ = 0xff;  // jmp *kGuestHandlerPointer (kGuestCpuidPointer)
        *p++ = 0x24;
        *p++ = 0x25;
        put32(p, cpuid ? kGuestCpuidPointer : kGuestHandlerPointer);
    }
    area.resize((area.size() + 4095) & ~uint64_t{4095}, 0xcc);
    return area;
}

void for_each_patch(const ElfImage& image, const std::vector<uint64_t>& sites,
                    const std::function<void(uint64_t, const uint8_t*, unsigned)>& f) {
    const uint64_t base = stub_area_vaddr(image);
    uint64_t slot = 0;
    for (uint64_t site : sites) {
        const SiteKind kind = site_kind(site);
        const uint64_t off = site_offset(site);
        if (kind == kExitSite) {
            f(off, kExitReplacement, 2);
            continue;
        }
        const unsigned len = patch_length(site);
        const uint64_t jmp_va = vaddr_of(image, off) + 2 - len;
        uint8_t bytes[kCopyMax + 2];
        std::memset(bytes, 0x90, sizeof bytes);  // jmp rel32; nop...
        bytes[0] = 0xe9;
        uint8_t* p = bytes + 1;
        put32(p, base + slot++ * kStubSlot - (jmp_va + 5));
        f(off + 2 - len, bytes, len);
    }
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

std::vector<uint8_t> encode_sites(uint64_t file_size, const std::vector<uint64_t>& sites) {
    std::vector<uint8_t> buf(24 + sites.size() * 8);
    const uint64_t count = sites.size();
    std::memcpy(buf.data(), kMagic, 8);
    std::memcpy(buf.data() + 8, &file_size, 8);
    std::memcpy(buf.data() + 16, &count, 8);
    if (count) std::memcpy(buf.data() + 24, sites.data(), count * 8);
    return buf;
}

std::optional<std::vector<uint64_t>> read_sites(int fd, std::span<const uint8_t> file, const ElfImage& image) {
    struct {
        char magic[8];
        uint64_t file_size;
        uint64_t count;
    } header;
    if (!read_full(fd, &header, sizeof header)) return std::nullopt;
    if (std::memcmp(header.magic, kMagic, 8) != 0 || header.file_size != file.size() || header.count > file.size() / 2)
        return std::nullopt;
    std::vector<uint64_t> offsets(header.count);
    if (!read_full(fd, offsets.data(), header.count * sizeof(uint64_t))) return std::nullopt;
    for (uint64_t site : offsets) {
        const uint64_t off = site_offset(site);
        const unsigned len = patch_length(site);
        if (off < len - 2 || !in_exec_segment(image, off + 2 - len, len) || !has_shape(file, off, site))
            return std::nullopt;
    }
    return offsets;
}

std::optional<std::vector<uint64_t>> RewriteCache::load(const std::string& hash, std::span<const uint8_t> file,
                                                        const ElfImage& image) const {
    if (dir_.empty()) return std::nullopt;
    auto fd = open_regular(dir_ + "/" + hash);
    if (!fd) return std::nullopt;
    return read_sites(fd->get(), file, image);
}

void RewriteCache::store(const std::string& hash, uint64_t file_size, const std::vector<uint64_t>& offsets) const {
    if (dir_.empty() || !make_dirs(dir_)) return;
    const std::vector<uint8_t> buf = encode_sites(file_size, offsets);
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
                                            const RewriteCache& cache, const Decoder& decode,
                                            const FileIdentity* identity, bool* cache_hit) {
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
    auto sites = decode(file, image);
    if (!sites) return sites;
    cache.store(hash, file.size(), *sites);
    if (identity) cache.store(id_key, file.size(), *sites);
    return sites;
}

namespace {

constexpr char kImageMagic[8] = {'V', 'S', 'L', 'I', 'M', 'G', '0', '4'};

struct ImageHeader {
    char magic[8];
    uint64_t file_size;
    uint64_t sites;
    uint64_t stub_size;
    uint64_t self_exe[kSelfExeStrings];  // file offsets of "/proc/self/exe" in read-only segments, or 0
    uint64_t check;                      // XXH3-64 of the fields above
};
static_assert(sizeof(ImageHeader) == 72);

constexpr char kSelfExe[] = "/proc/self/exe";  // with its NUL: 15 bytes

// The first "/proc/self/exe" strings in segments the program cannot write
// without an mprotect (glibc's static start-up passes one to readlink;
// busybox has two copies).
void find_self_exe(std::span<const uint8_t> file, const ElfImage& image, uint64_t (&out)[kSelfExeStrings]) {
    size_t n = 0;
    for (const auto& s : image.segments) {
        if (s.flags & PF_W || s.offset > file.size() || s.filesz > file.size() - s.offset) continue;
        const uint8_t* p = file.data() + s.offset;
        const uint8_t* end = p + s.filesz;
        while (n < kSelfExeStrings && p < end) {
            const void* hit = ::memmem(p, static_cast<size_t>(end - p), kSelfExe, sizeof kSelfExe);
            if (!hit) break;
            p = static_cast<const uint8_t*>(hit);
            out[n++] = static_cast<uint64_t>(p - file.data());
            p += sizeof kSelfExe;
        }
    }
}

uint64_t header_check(const ImageHeader& h) { return XXH3_64bits(&h, offsetof(ImageHeader, check)); }

std::string image_path(const RewriteCache& cache, const FileIdentity& identity) {
    return cache.dir() + "/" + identity.key() + ".img";
}

}  // namespace

std::optional<CachedImage> open_cached_image(const RewriteCache& cache, const FileIdentity& identity) {
    if (cache.dir().empty()) return std::nullopt;
    auto opened = open_regular(image_path(cache, identity));
    if (!opened) return std::nullopt;
    Fd fd = std::move(*opened);
    ImageHeader h;
    struct stat st;
    if (::pread(fd.get(), &h, sizeof h, 0) != sizeof h || ::fstat(fd.get(), &st) != 0) return std::nullopt;
    if (std::memcmp(h.magic, kImageMagic, 8) != 0 || h.check != header_check(h) || h.file_size != identity.size ||
        h.sites > identity.size / 2 || h.stub_size % 4096 || h.stub_size > h.sites * kStubSlot + 4095 ||
        std::any_of(std::begin(h.self_exe), std::end(h.self_exe),
                    [&](uint64_t off) {
                        return off &&
                               (off < 64 || identity.size < sizeof kSelfExe || off > identity.size - sizeof kSelfExe);
                    }) ||
        static_cast<uint64_t>(st.st_size) != kImageHeaderSize + identity.size + h.stub_size)
        return std::nullopt;
    CachedImage image{std::move(fd), h.sites, std::vector<uint8_t>(h.stub_size), {}};
    std::copy(std::begin(h.self_exe), std::end(h.self_exe), image.self_exe.begin());
    const off_t stubs_at = static_cast<off_t>(kImageHeaderSize + identity.size);
    if (h.stub_size &&
        ::pread(image.fd.get(), image.stubs.data(), h.stub_size, stubs_at) != static_cast<ssize_t>(h.stub_size))
        return std::nullopt;
    return image;
}

std::array<uint64_t, kSelfExeStrings> self_exe_addresses(const CachedImage& cached, const ElfImage& image,
                                                         uint64_t load_bias) {
    std::array<uint64_t, kSelfExeStrings> out{};
    for (size_t i = 0; i < out.size(); ++i) {
        const uint64_t off = cached.self_exe[i];
        for (const auto& s : image.segments)
            if (off && !(s.flags & PF_W) && off >= s.offset && off - s.offset < s.filesz)
                out[i] = s.vaddr + load_bias + (off - s.offset);
    }
    return out;
}

void store_cached_image(const RewriteCache& cache, const FileIdentity& identity, std::span<const uint8_t> file,
                        const ElfImage& image, const std::vector<uint64_t>& sites, std::span<const uint8_t> stubs) {
    if (cache.dir().empty() || file.size() != identity.size || !make_dirs(cache.dir())) return;
    std::vector<uint8_t> buf(kImageHeaderSize + file.size() + stubs.size());
    ImageHeader h{};
    std::memcpy(h.magic, kImageMagic, 8);
    h.file_size = file.size();
    h.sites = sites.size();
    h.stub_size = stubs.size();
    find_self_exe(file, image, h.self_exe);
    h.check = header_check(h);
    std::memcpy(buf.data(), &h, sizeof h);
    uint8_t* body = buf.data() + kImageHeaderSize;
    std::memcpy(body, file.data(), file.size());
    for_each_patch(image, sites, [&](uint64_t off, const uint8_t* bytes, unsigned len) {
        if (off <= file.size() && len <= file.size() - off) std::memcpy(body + off, bytes, len);
    });
    if (!stubs.empty()) std::memcpy(body + file.size(), stubs.data(), stubs.size());
    (void)write_file_atomic(image_path(cache, identity), buf.data(), buf.size());
}

}  // namespace vessel::loader
