#include "loader/script.h"

#include <algorithm>

namespace vessel::loader {
namespace {

bool blank(char c) { return c == ' ' || c == '\t'; }

}  // namespace

Result<std::optional<Shebang>> parse_shebang(std::span<const uint8_t> head) {
    if (head.size() < 2 || head[0] != '#' || head[1] != '!') return std::optional<Shebang>();
    const std::string_view text(reinterpret_cast<const char*>(head.data()), std::min(head.size(), kShebangMax));
    const size_t end = std::min(text.find_first_of("\n", 2), text.find('\0', 2));
    // A file shorter than the buffer ends its line (Linux's buffer is zeroed).
    const bool line_ends = end != std::string_view::npos || head.size() < kShebangMax;
    std::string_view line = text.substr(2, line_ends ? end - 2 : std::string_view::npos);
    while (!line.empty() && blank(line.front())) line.remove_prefix(1);
    while (!line.empty() && blank(line.back())) line.remove_suffix(1);
    const size_t interp_end = std::min(line.size(), line.find_first_of(" \t"));
    if (interp_end == 0) return fail("#! line names no interpreter", ENOEXEC);
    // Linux refuses a first line cut by its buffer only where the cut
    // falls in the interpreter's name (it would be the wrong file).
    if (!line_ends && interp_end == line.size()) return fail("#! line is too long", ENOEXEC);
    Shebang s;
    s.interpreter = std::string(line.substr(0, interp_end));
    std::string_view rest = line.substr(interp_end);
    while (!rest.empty() && blank(rest.front())) rest.remove_prefix(1);
    if (!rest.empty()) s.argument = std::string(rest);
    return std::optional<Shebang>(std::move(s));
}

}  // namespace vessel::loader
