// `#!` scripts, as Linux's binfmt_script reads their first line.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/result.h"

namespace vessel::loader {

// How much of a file Linux looks at for `#!` (BINPRM_BUF_SIZE).
inline constexpr size_t kShebangMax = 256;

struct Shebang {
    std::string interpreter;
    std::optional<std::string> argument;  // the rest of the line, one argument
};

// nullopt: `head` (the file's first bytes) does not start with "#!". Else
// the interpreter and its optional argument: blanks (space, tab) skip, the
// interpreter ends at a blank, the argument is the rest of the line with
// its trailing blanks cut, the line at a newline, a NUL or the end of a
// file shorter than kShebangMax (`head` holds all of it then). A line that does
// not end within kShebangMax bytes is refused unless the interpreter did
// (Linux 5.1+), and so is an empty interpreter (ENOEXEC).
Result<std::optional<Shebang>> parse_shebang(std::span<const uint8_t> head);

}  // namespace vessel::loader
