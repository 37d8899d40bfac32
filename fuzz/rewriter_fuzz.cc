// Fuzzes the rewriter's decoder path (loader/rewriter.h): parse_elf, find_sites, build_stubs, for_each_patch.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "loader/rewriter.h"

using namespace vessel::loader;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::span<const uint8_t> file(data, size);
    auto image = parse_elf(file);
    if (!image) return 0;
    auto sites = find_sites(file, *image);
    if (!sites) return 0;
    for (uint64_t site : *sites) FUZZ_CHECK(has_shape(file, site_offset(site), site));
    // What the cache writes must read back as the same sites.
    auto entry = encode_sites(size, *sites);
    auto fd = vessel::fuzz::memfd_with(entry);
    auto back = read_sites(fd.get(), file, *image);
    FUZZ_CHECK(back && *back == *sites);
    auto stubs = build_stubs(file, *image, *sites);
    FUZZ_CHECK(stubs.size() % 4096 == 0);
    for_each_patch(*image, *sites, [&](uint64_t off, const uint8_t* bytes, unsigned len) {
        FUZZ_CHECK(bytes && len >= 2 && off <= size && len <= size - off);
    });
    return 0;
}
