// Fuzzes the rewrite cache's readers (loader/rewriter.h): a site-list entry (read_sites) and a KEY.img header
// (open_cached_image).
//
// Input: u16 ELF length, the ELF, then the cache data: read as a site-list
// entry for that ELF, and as a KEY.img whose first 72 bytes are its header
// (the harness fixes the file size and the header's XXH3, which a fuzzer
// cannot guess) followed by the ELF and the rest as the stub area.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "loader/rewriter.h"

using namespace vessel::loader;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    size_t elf_len = data[0] | size_t{data[1]} << 8;
    data += 2, size -= 2;
    if (elf_len > size) return 0;
    std::span<const uint8_t> file(data, elf_len);
    std::span<const uint8_t> rest(data + elf_len, size - elf_len);
    auto image = parse_elf(file);
    if (!image) return 0;

    auto fd = vessel::fuzz::memfd_with(rest);
    if (auto sites = read_sites(fd.get(), file, *image))
        for (uint64_t site : *sites) FUZZ_CHECK(has_shape(file, site_offset(site), site));

    constexpr size_t kHeader = 72;
    if (rest.size() < kHeader) return 0;
    std::vector<uint8_t> img(kImageHeaderSize, 0);
    std::memcpy(img.data(), rest.data(), kHeader);
    const uint64_t file_size = file.size();
    std::memcpy(img.data() + 8, &file_size, 8);
    const uint64_t check = XXH3_64bits(img.data(), 64);
    std::memcpy(img.data() + 64, &check, 8);
    img.insert(img.end(), file.begin(), file.end());
    img.insert(img.end(), rest.begin() + kHeader, rest.end());
    RewriteCache cache(vessel::fuzz::scratch_dir());
    FileIdentity id{.dev = 1, .ino = 2, .size = file.size(), .mtime_ns = 3, .ctime_ns = 4};
    vessel::fuzz::write_file(cache.dir() + "/" + id.key() + ".img", img);
    auto cached = open_cached_image(cache, id);
    if (!cached) return 0;
    FUZZ_CHECK(cached->stubs.size() % 4096 == 0);
    for (uint64_t va : self_exe_addresses(*cached, *image, 0x10000)) {
        if (!va) continue;
        bool inside = false;
        for (const auto& s : image->segments)
            inside |= !(s.flags & PF_W) && va >= s.vaddr + 0x10000 && va - s.vaddr - 0x10000 < s.filesz;
        FUZZ_CHECK(inside);
    }
    return 0;
}
