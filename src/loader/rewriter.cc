#include "loader/rewriter.h"

#include <Zydis/Zydis.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/fd.h"

namespace vessel::loader {
namespace {

constexpr char kMagic[8] = {'V', 'S', 'L', 'R', 'W', '0', '0', '1'};

bool in_exec_segment(const ElfImage& image, uint64_t off, uint64_t len) {
    for (const auto& s : image.segments)
        if ((s.flags & PF_X) && off >= s.offset && off + len <= s.offset + s.filesz) return true;
    return false;
}

bool mkdirs(const std::string& path) {
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i != path.size() && path[i] != '/') continue;
        std::string part = path.substr(0, i);
        if (::mkdir(part.c_str(), 0755) < 0 && errno != EEXIST) return false;
    }
    return true;
}

}  // namespace

std::vector<uint64_t> find_syscalls(std::span<const uint8_t> file, const ElfImage& image) {
    ZydisDecoder decoder;
    ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    ZydisDecoderEnableMode(&decoder, ZYDIS_DECODER_MODE_MINIMAL, ZYAN_TRUE);
    std::vector<uint64_t> sites;
    for (const auto& s : image.segments) {
        if (!(s.flags & PF_X)) continue;
        const uint8_t* code = file.data() + s.offset;
        uint64_t pos = 0;
        while (pos < s.filesz) {
            ZydisDecodedInstruction insn;
            if (ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&decoder, nullptr, code + pos, s.filesz - pos,
                                                           &insn))) {
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
    if (!dir_.empty()) return;
    if (const char* d = std::getenv("VESSEL_CACHE_DIR"); d && *d) dir_ = d;
    else if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir_ = std::string(x) + "/vessel";
    else if (const char* h = std::getenv("HOME"); h && *h) dir_ = std::string(h) + "/.cache/vessel";
    if (!dir_.empty()) dir_ += "/rewrite";
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
    if (dir_.empty() || !mkdirs(dir_)) return;
    // Write-then-rename, so a concurrent reader sees the old entry or the new one.
    std::string tmp = dir_ + "/." + hash + "." + std::to_string(::getpid());
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return;
    std::vector<uint8_t> buf(24 + offsets.size() * 8);
    uint64_t count = offsets.size();
    std::memcpy(buf.data(), kMagic, 8);
    std::memcpy(buf.data() + 8, &file_size, 8);
    std::memcpy(buf.data() + 16, &count, 8);
    if (count) std::memcpy(buf.data() + 24, offsets.data(), count * 8);
    bool ok = ::write(fd.get(), buf.data(), buf.size()) == static_cast<ssize_t>(buf.size());
    fd.reset();
    if (!ok || ::rename(tmp.c_str(), (dir_ + "/" + hash).c_str()) < 0) ::unlink(tmp.c_str());
}

std::vector<uint64_t> syscall_sites(std::span<const uint8_t> file, const ElfImage& image,
                                    const RewriteCache& cache, bool* cache_hit) {
    std::string hash = content_hash(file);
    if (auto cached = cache.load(hash, file, image)) {
        if (cache_hit) *cache_hit = true;
        return *cached;
    }
    if (cache_hit) *cache_hit = false;
    auto sites = find_syscalls(file, image);
    cache.store(hash, file.size(), sites);
    return sites;
}

}  // namespace vessel::loader
