// Parsing of human-written sizes ("64M", "1G", "4096").
#pragma once

#include <cstdint>
#include <string_view>

#include "base/result.h"

namespace vessel {

// Accepts a decimal number with an optional K/M/G/T suffix (powers of 1024,
// optionally followed by "iB" or "B"). Rejects zero, overflow and junk.
Result<uint64_t> parse_size(std::string_view text);

}  // namespace vessel
