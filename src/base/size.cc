#include "base/size.h"

#include <charconv>
#include <string>

namespace vessel {

Result<uint64_t> parse_size(std::string_view text) {
    auto bad = [&] { return fail("invalid size '" + std::string(text) + "' (expected e.g. 64M, 1G, 4096)", EINVAL); };
    uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc{} || ptr == text.data()) return bad();
    std::string_view suffix(ptr, text.data() + text.size() - ptr);
    unsigned shift = 0;
    if (!suffix.empty()) {
        switch (suffix[0] | 0x20) {
            case 'k': shift = 10; break;
            case 'm': shift = 20; break;
            case 'g': shift = 30; break;
            case 't': shift = 40; break;
            case 'b': shift = 0; break;
            default: return bad();
        }
        suffix.remove_prefix(1);
        if (suffix == "iB" || suffix == "ib" || suffix == "B" || suffix == "b") suffix = {};
        if (!suffix.empty()) return bad();
    }
    if (value == 0 || (shift && value > (UINT64_MAX >> shift))) return bad();
    return value << shift;
}

}  // namespace vessel
