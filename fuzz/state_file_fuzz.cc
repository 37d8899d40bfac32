// Fuzzes the snapshot state file's container reader (state/format.h, read_state_file).
//
// The harness rewrites the header's size and every checksum it can find to
// match the input (a fuzzer cannot guess an XXH3), so the section table
// and what follows it are what gets explored; inputs with the checksums left
// wrong are tried too (the first input byte chooses).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "state/format.h"

using namespace vessel::state;

namespace {

void fix_checksums(std::vector<uint8_t>& f) {
    if (f.size() < kHeaderSize) return;
    uint32_t count;
    std::memcpy(&count, f.data() + 12, 4);
    size_t pos = kHeaderSize;
    for (uint32_t i = 0; i < count && f.size() - pos >= 24; ++i) {
        uint64_t len;
        std::memcpy(&len, f.data() + pos + 8, 8);
        if (len > f.size() - pos - 24) break;
        uint64_t sum = checksum(f.data() + pos + 24, len);
        std::memcpy(f.data() + pos + 16, &sum, 8);
        pos += 24 + len;
    }
    uint64_t size = f.size() - kHeaderSize;
    std::memcpy(f.data() + 16, &size, 8);
    uint64_t sum = checksum(f.data() + kHeaderSize, size);
    std::memcpy(f.data() + 24, &sum, 8);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    std::vector<uint8_t> file(data + 1, data + size);
    if (data[0] & 1) fix_checksums(file);
    const std::string path = vessel::fuzz::scratch_dir() + "/state.bin";
    vessel::fuzz::write_file(path, file);
    auto sections = read_state_file(path);
    if (!sections) return 0;
    // A file that reads must write back and read again unchanged.
    const std::string copy = vessel::fuzz::scratch_dir() + "/copy.bin";
    FUZZ_CHECK(write_state_file(copy, *sections).has_value());
    auto again = read_state_file(copy);
    FUZZ_CHECK(again && *again == *sections);
    return 0;
}
