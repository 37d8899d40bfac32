// Small text forms shared by every layer's messages and records.
#pragma once

#include <cstdint>
#include <string>

namespace vessel {

// "0x1f": addresses and values in error messages.
std::string hex(uint64_t v);

// The current UTC time as RFC 3339 ("2026-12-06T22:40:08Z"; with
// `milliseconds`, "2026-12-06T22:40:08.123Z"). Calendar arithmetic only:
// glibc's gmtime_r would first load the time zone database
// (/etc/localtime), a cost on every VM start.
std::string now_rfc3339(bool milliseconds = false);

}  // namespace vessel
