#include "base/text.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>

namespace vessel {

std::string hex(uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
    return buf;
}

std::optional<uint32_t> parse_id(std::string_view text) {
    if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string_view::npos)
        return std::nullopt;
    uint32_t v = 0;
    for (char c : text) v = v * 10 + static_cast<uint32_t>(c - '0');
    return v;
}

std::optional<std::pair<uint32_t, uint32_t>> parse_id_pair(std::string_view text) {
    const auto colon = text.find(':');
    const auto uid = parse_id(text.substr(0, colon));
    const auto gid = colon == std::string_view::npos ? uid : parse_id(text.substr(colon + 1));
    if (!uid || !gid) return std::nullopt;
    return std::pair{*uid, *gid};
}

std::string now_rfc3339(bool milliseconds) {
    using namespace std::chrono;
    const auto now = floor<std::chrono::milliseconds>(system_clock::now());
    const auto day = floor<days>(now);
    const year_month_day ymd{day};
    const hh_mm_ss hms{now - day};
    char buf[48];
    int n = std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02ld", static_cast<int>(ymd.year()),
                          static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                          static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                          static_cast<long>(hms.seconds().count()));
    if (milliseconds)
        n += std::snprintf(buf + n, sizeof buf - n, ".%03ld", static_cast<long>(hms.subseconds().count()));
    std::snprintf(buf + n, sizeof buf - n, "Z");
    return buf;
}

}  // namespace vessel
