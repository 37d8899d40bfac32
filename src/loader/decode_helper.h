// Runs the decoder (find_sites, decoder.cc) in a process of its own.
//
// `vessel` is a static PIE: it does not load Zydis, a shared library. On a
// rewrite-cache miss it starts `vessel-decode`, which lies next to it, with
// the program open on descriptor 3; the helper writes the sites to its
// standard output in the rewrite cache's entry format, and they are checked
// like a cache entry before use. A decoder that crashes on a hostile file
// takes only the helper down.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "loader/elf.h"

namespace vessel::loader {

// vessel-decode in the directory of the running executable.
std::string decoder_path();

// The sites of `file` (the bytes of the program open on `program_fd`).
Result<std::vector<uint64_t>> decode_in_helper(int program_fd, std::span<const uint8_t> file, const ElfImage& image);

}  // namespace vessel::loader
