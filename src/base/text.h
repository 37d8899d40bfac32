// Small text forms shared by every layer's messages and records.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace vessel {

// "0x1f": addresses and values in error messages.
std::string hex(uint64_t v);

// The current UTC time as RFC 3339 ("2026-12-06T22:40:08Z"; with
// `milliseconds`, "2026-12-06T22:40:08.123Z"). Calendar arithmetic only:
// glibc's gmtime_r would first load the time zone database
// (/etc/localtime), a cost on every VM start.
std::string now_rfc3339(bool milliseconds = false);

// A user or group id written as a number: 1-9 decimal digits, nothing else.
std::optional<uint32_t> parse_id(std::string_view text);
// "UID[:GID]", numbers (GID: the UID when not given).
std::optional<std::pair<uint32_t, uint32_t>> parse_id_pair(std::string_view text);

}  // namespace vessel
