// Validated view of an x86-64 ELF executable (static or dynamic) or of a
// dynamic loader (ld.so).
#pragma once

#include <elf.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace vessel::loader {

struct Segment {
    uint64_t vaddr;  // before the load bias
    uint64_t memsz;
    uint64_t offset;  // in the file
    uint64_t filesz;
    uint32_t flags;  // PF_R/PF_W/PF_X
};

struct ElfImage {
    bool pie = false;         // ET_DYN (static-pie): loaded at a bias
    uint64_t entry = 0;       // before the load bias
    uint64_t phdr_vaddr = 0;  // where the program headers are in memory, before bias
    uint16_t phnum = 0;
    std::vector<Segment> segments;     // PT_LOAD, ascending vaddr, non-overlapping
    uint64_t lowest = 0, highest = 0;  // page-aligned span of all segments
    // PT_INTERP: the dynamic loader's path, as the program names it (empty:
    // a static executable).
    std::string interp;
};

// The longest PT_INTERP Linux accepts (PATH_MAX, NUL included).
inline constexpr uint64_t kMaxInterpBytes = 4096;

// Checks everything Linux's loader relies on and more: header fields, program
// header table bounds, segment bounds and order, entry inside an executable
// segment; a PT_INTERP of 2 to kMaxInterpBytes bytes ending in its only NUL.
Result<ElfImage> parse_elf(std::span<const uint8_t> file);

}  // namespace vessel::loader
