// Validated view of a static x86-64 ELF executable.
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
};

// Checks everything Linux's loader relies on and more: header fields, program
// header table bounds, segment bounds and order, entry inside an executable
// segment. Dynamic executables are refused with a clear message.
Result<ElfImage> parse_elf(std::span<const uint8_t> file);

}  // namespace vessel::loader
