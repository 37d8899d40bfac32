// Loads an executable (and, for a dynamic one, its dynamic loader) into a
// thin guest's address space and builds the initial process stack exactly as
// Linux does (argc, argv, envp, auxv).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "loader/elf.h"
#include "memory/address_space.h"

namespace vessel::loader {

// Where Linux puts a static-pie executable when randomization is off.
inline constexpr uint64_t kPieBase = 0x5555'5555'4000ull;

// A dynamic executable's loader (ld.so), mapped beside the program as Linux's
// binfmt_elf maps it: anywhere free (top-down, like an mmap), its entry the
// one the process starts at, its base in AT_BASE.
struct InterpreterImage {
    std::span<const uint8_t> file;
    ElfImage image;
    std::vector<uint64_t> sites;  // as load_program's
    std::vector<uint8_t> stubs;
    uint64_t image_gpa = 0;  // as ProgramSpec's
};

struct ProgramSpec {
    std::vector<std::string> argv;
    std::vector<std::string> envp;
    std::string execfn;  // AT_EXECFN: the path the program was started by
    uint64_t stack_size = 8ull << 20;
    // The stack's pages are mapped as the program touches them
    // (AddressSpace::map_lazy), not all at once.
    bool lazy_stack = false;
    uint32_t hwcap = 0;   // AT_HWCAP
    uint32_t hwcap2 = 0;  // AT_HWCAP2
    uint32_t uid = 0, euid = 0, gid = 0, egid = 0;
    uint8_t random[16] = {};  // AT_RANDOM bytes
    // Guest-physical base of a file region holding the whole file (see
    // GuestMemory::add_file_region), or 0 to copy the segments into RAM.
    uint64_t image_gpa = 0;
    const InterpreterImage* interpreter = nullptr;  // a dynamic executable's
};

struct LoadedProgram {
    uint64_t entry = 0;  // where the process starts: the interpreter's entry, if any
    uint64_t stack_pointer = 0;
    uint64_t brk_start = 0;
    uint64_t load_bias = 0;
    uint64_t stack_low = 0;    // lowest mapped stack address
    uint64_t interp_bias = 0;  // AT_BASE (0: no interpreter)
};

// Maps the segments (bss zeroed), rewrites each syscall site (from
// syscall_sites()), maps the stub area (build_stubs(), or a cached copy;
// empty: none) after the image and builds the stack. With spec.image_gpa, segment
// pages are mapped straight from the file region (no copy; the rewrite and
// guest writes copy single pages on demand); otherwise the bytes are copied.
Result<LoadedProgram> load_program(memory::AddressSpace& as, std::span<const uint8_t> file, const ElfImage& image,
                                   const std::vector<uint64_t>& syscall_sites, std::span<const uint8_t> stubs,
                                   const ProgramSpec& spec);

}  // namespace vessel::loader
