// Fuzzes parse_elf (loader/elf.h): any bytes as an executable's header and program headers.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "loader/elf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    auto image = vessel::loader::parse_elf({data, size});
    if (!image) return 0;
    // What the loader then relies on without checking again.
    uint64_t prev_end = 0;
    for (const auto& s : image->segments) {
        FUZZ_CHECK(s.filesz <= s.memsz);
        FUZZ_CHECK(s.offset <= size && s.filesz <= size - s.offset);
        FUZZ_CHECK(s.vaddr >= prev_end);
        FUZZ_CHECK(s.vaddr + s.memsz >= s.vaddr);
        prev_end = s.vaddr + s.memsz;
        FUZZ_CHECK(s.vaddr >= image->lowest && prev_end <= image->highest);
    }
    FUZZ_CHECK(!image->segments.empty());
    return 0;
}
