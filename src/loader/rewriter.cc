#include "loader/rewriter.h"

#include <Zydis/Zydis.h>
#include <dlfcn.h>
#include <fcntl.h>
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

namespace vessel::loader {
namespace {

constexpr char kMagic[8] = {'V', 'S', 'L', 'R', 'W', '0', '0', '2'};

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

namespace {

// The bytes a site replaces, ending with the syscall.
unsigned patch_length(uint64_t site) {
    switch (site_kind(site)) {
        case kMovSite: return 7;
        case kJccXorSite: return 6;
        case kCopySite: return site_copied(site) + 2;
        default: return 2;
    }
}

// Do the bytes before the syscall at `off` have the shape `site` says?
// (For a copy site only the length can be checked without decoding.)
bool has_shape(std::span<const uint8_t> code, uint64_t off, uint64_t site) {
    const unsigned len = patch_length(site);
    if (off < len - 2 || off + 2 > code.size() || std::memcmp(&code[off], kSyscall, 2) != 0) return false;
    const uint8_t* p = &code[off + 2 - len];
    switch (site_kind(site)) {
        case kExitSite: return site_copied(site) == 0;
        case kMovSite: return p[0] == 0xb8 && site_copied(site) == 0;  // mov $imm32,%eax
        case kJccXorSite:                                                // jcc rel8; xor %eax,%eax
            return (p[0] & 0xf0) == 0x70 && (p[2] == 0x31 || p[2] == 0x33) && p[3] == 0xc0 && site_copied(site) == 0;
        case kCopySite: return site_copied(site) >= kCopyMin && site_copied(site) <= kCopyMax;
    }
    return false;
}

// Can the instruction run unchanged at another address, and fall through
// to the next one? No relative operand, no RIP-relative memory operand, no
// transfer of control. Padding and ENDBR64 are not taken either: a function
// may start right after them, reached through a pointer the sweep cannot
// see, and a copy site's jump must not cover a function's entry.
bool copyable(const ZydisDecodedInstruction& i) {
    if (i.attributes & ZYDIS_ATTRIB_IS_RELATIVE) return false;
    if (i.raw.modrm.offset && i.raw.modrm.mod == 0 && i.raw.modrm.rm == 5) return false;  // RIP-relative
    switch (i.mnemonic) {
        case ZYDIS_MNEMONIC_JMP:
        case ZYDIS_MNEMONIC_CALL:
        case ZYDIS_MNEMONIC_RET:
        case ZYDIS_MNEMONIC_IRET:
        case ZYDIS_MNEMONIC_IRETD:
        case ZYDIS_MNEMONIC_IRETQ:
        case ZYDIS_MNEMONIC_SYSCALL:
        case ZYDIS_MNEMONIC_SYSENTER:
        case ZYDIS_MNEMONIC_SYSEXIT:
        case ZYDIS_MNEMONIC_SYSRET:
        case ZYDIS_MNEMONIC_INT:
        case ZYDIS_MNEMONIC_INT1:
        case ZYDIS_MNEMONIC_INT3:
        case ZYDIS_MNEMONIC_INTO:
        case ZYDIS_MNEMONIC_UD0:
        case ZYDIS_MNEMONIC_UD1:
        case ZYDIS_MNEMONIC_UD2:
        case ZYDIS_MNEMONIC_HLT:
        case ZYDIS_MNEMONIC_NOP:
        case ZYDIS_MNEMONIC_ENDBR64: return false;
        default: return true;
    }
}

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

// The kind of the syscall site at `pos` given the instructions before it
// (newest first; each must end where the next begins). Offset left 0.
template <class Prior>
uint64_t site_before(std::span<const uint8_t> code, uint64_t pos, const Prior (&prior)[3]) {
    auto adjacent = [&](int n) {  // prior[0..n] decoded and contiguous up to pos
        uint64_t end = pos;
        for (int i = 0; i <= n; ++i) {
            if (!prior[i].length || prior[i].at + prior[i].length != end) return false;
            end = prior[i].at;
        }
        return true;
    };
    if (adjacent(0) && prior[0].length == 5 && has_shape(code, pos, make_site(0, kMovSite)))
        return make_site(0, kMovSite);
    if (adjacent(1) && prior[0].length == 2 && prior[1].length == 2 && has_shape(code, pos, make_site(0, kJccXorSite)))
        return make_site(0, kJccXorSite);
    unsigned copied = 0;
    for (int i = 0; i < 3 && copied < kCopyMin; ++i) {
        if (!adjacent(i) || !prior[i].copyable) return make_site(0, kExitSite);
        copied += prior[i].length;
    }
    if (copied < kCopyMin || copied > kCopyMax) return make_site(0, kExitSite);
    return make_site(0, kCopySite, copied);
}

}  // namespace

Result<std::vector<uint64_t>> find_syscalls(std::span<const uint8_t> file, const ElfImage& image) {
    static const Result<Zydis> zydis = load_zydis();
    if (!zydis) return std::unexpected(zydis.error());
    ZydisDecoder decoder;
    zydis->init(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    // Lengths, mnemonics, the relative attribute and the raw immediates are
    // all this needs: the minimal mode decodes them at a fraction of the cost.
    zydis->enable_mode(&decoder, ZYDIS_DECODER_MODE_MINIMAL, ZYAN_TRUE);
    std::vector<uint64_t> sites;
    for (const auto& s : image.segments) {
        if (!(s.flags & PF_X)) continue;
        std::span<const uint8_t> code = file.subspan(s.offset, s.filesz);
        // Bytes 0F 05 anywhere (a superset of the syscalls): only branch
        // targets just before one of them matter, so only those are kept.
        std::vector<uint64_t> maybe_syscalls;
        for (uint64_t i = 0; i + 1 < code.size(); ++i)
            if (code[i] == kSyscall[0] && code[i + 1] == kSyscall[1]) maybe_syscalls.push_back(i);
        auto near_a_syscall = [&](uint64_t t) {
            auto c = std::lower_bound(maybe_syscalls.begin(), maybe_syscalls.end(), t > 0 ? t - 1 : 0);
            return c != maybe_syscalls.end() && *c <= t + kCopyMax + 2;
        };
        std::vector<uint64_t> targets;  // where direct branches land near a syscall (segment offsets)
        std::vector<std::pair<uint64_t, uint64_t>> found;  // segment offset, site (kind)
        // The three instructions before, newest first (length 0: did not decode).
        struct Prior {
            uint64_t at = 0;
            unsigned length = 0;
            bool copyable = false;
        } prior[3];
        uint64_t pos = 0;
        while (pos < code.size()) {
            ZydisDecodedInstruction insn;
            if (!ZYAN_SUCCESS(zydis->decode(&decoder, nullptr, code.data() + pos, code.size() - pos, &insn))) {
                ++pos;  // data or padding inside the code: resynchronise byte by byte
                prior[0] = prior[1] = prior[2] = {};
                continue;
            }
            if ((insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && insn.raw.imm[0].is_relative) {
                const uint64_t t = pos + insn.length + static_cast<uint64_t>(insn.raw.imm[0].value.s);
                if (near_a_syscall(t)) targets.push_back(t);
            }
            if (insn.mnemonic == ZYDIS_MNEMONIC_SYSCALL && insn.length == 2 && has_shape(code, pos, kExitSite))
                found.emplace_back(pos, site_before(code, pos, prior));
            prior[2] = prior[1];
            prior[1] = prior[0];
            prior[0] = {pos, insn.length, copyable(insn)};
            pos += insn.length;
        }
        // A branch into the replaced bytes (past their first) would land in
        // the middle of the jump: such a site only exits.
        std::sort(targets.begin(), targets.end());
        for (auto [at, site] : found) {
            const uint64_t first = at + 2 - patch_length(site);
            auto t = std::upper_bound(targets.begin(), targets.end(), first);
            if (t != targets.end() && *t < at + 2) site = make_site(0, kExitSite);
            sites.push_back(site | (s.offset + at));
        }
    }
    return sites;
}

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
            *p++ = 0x0f;                                                      // jcc rel32
            *p++ = static_cast<uint8_t>(0x80 | cc);
            put32(p, target - (stub_va + 6));
            *p++ = 0x31;  // xor %eax,%eax
            *p++ = 0xc0;
        }
        const uint64_t lea_end = stub_va + (p - (area.data() + area.size() - kStubSlot)) + 7;
        *p++ = 0x48;  // lea after_site(%rip),%rcx: the return address, as syscall leaves it in RCX
        *p++ = 0x8d;
        *p++ = 0x0d;
        put32(p, site_va + 2 - lea_end);
        *p++ = 0xff;  // jmp *kGuestHandlerPointer
        *p++ = 0x24;
        *p++ = 0x25;
        put32(p, kGuestHandlerPointer);
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
    for (uint64_t site : offsets) {
        const uint64_t off = site_offset(site);
        const unsigned len = patch_length(site);
        if (off < len - 2 || !in_exec_segment(image, off + 2 - len, len) || !has_shape(file, off, site))
            return std::nullopt;
    }
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

constexpr char kImageMagic[8] = {'V', 'S', 'L', 'I', 'M', 'G', '0', '2'};

struct ImageHeader {
    char magic[8];
    uint64_t file_size;
    uint64_t sites;
    uint64_t stub_size;
    uint64_t check;  // XXH3-64 of the fields above
};
static_assert(sizeof(ImageHeader) == 40);

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
        h.sites > identity.size / 2 || h.stub_size % 4096 || h.stub_size > h.sites * kStubSlot + 4095 ||
        static_cast<uint64_t>(st.st_size) != kImageHeaderSize + identity.size + h.stub_size)
        return std::nullopt;
    CachedImage image{std::move(fd), h.sites, std::vector<uint8_t>(h.stub_size)};
    const off_t stubs_at = static_cast<off_t>(kImageHeaderSize + identity.size);
    if (h.stub_size &&
        ::pread(image.fd.get(), image.stubs.data(), h.stub_size, stubs_at) != static_cast<ssize_t>(h.stub_size))
        return std::nullopt;
    return image;
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
