// Fuzzes what `vessel run` reads of a program file before anything else:
// parse_elf (loader/elf.h: the header and program headers, PT_INTERP) and
// parse_shebang (loader/script.h: a #! line); then load_program copies a
// parsed image into a small guest, as a guest's execve makes it do with a
// file the guest wrote itself (with the image as its own interpreter too).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "loader/elf.h"
#include "loader/program.h"
#include "loader/script.h"
#include "memory/address_space.h"

namespace {

void check_shebang(const uint8_t* data, size_t size) {
    auto script = vessel::loader::parse_shebang({data, size});
    if (!script || !*script) return;
    const auto& s = **script;
    FUZZ_CHECK(!s.interpreter.empty() && s.interpreter.size() < vessel::loader::kShebangMax);
    FUZZ_CHECK(s.interpreter.find_first_of(std::string_view(" \t\n\0", 4)) == std::string::npos);
    if (s.argument) {
        FUZZ_CHECK(!s.argument->empty() && s.argument->find_first_of(std::string_view("\n\0", 2)) == std::string::npos);
        FUZZ_CHECK(s.argument->front() != ' ' && s.argument->back() != ' ');
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    check_shebang(data, size);
    auto image = vessel::loader::parse_elf({data, size});
    if (!image) return 0;
    FUZZ_CHECK(image->interp.size() < vessel::loader::kMaxInterpBytes);
    FUZZ_CHECK(image->interp.find('\0') == std::string::npos);
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

    // Loaded by copying (image_gpa 0), as execve loads: into 8 MiB of fresh
    // (zeroed) guest memory, as each VM's is.
    auto mem = vessel::memory::GuestMemory::create(8 << 20);
    if (!mem) return 0;
    vessel::memory::AddressSpace as(*mem, 0x1000);
    if (!as.init()) return 0;
    vessel::loader::ProgramSpec spec;
    spec.argv = {"fuzz"};
    spec.stack_size = 64 << 10;
    vessel::loader::InterpreterImage interp{{data, size}, *image, {}, {}, 0};
    if (size & 1) spec.interpreter = &interp;
    if (auto loaded = vessel::loader::load_program(as, {data, size}, *image, {}, {}, spec)) {
        FUZZ_CHECK(as.is_mapped(loaded->stack_pointer, 8));
        FUZZ_CHECK(loaded->stack_low <= loaded->stack_pointer);
    }
    return 0;
}
