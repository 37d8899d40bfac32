// base/text.h: the hex and RFC 3339 forms every layer's messages use.
#include "base/text.h"

#include <gtest/gtest.h>

#include <regex>

namespace vessel {
namespace {

TEST(Text, HexAlwaysHasItsPrefix) {
    EXPECT_EQ(hex(0), "0x0");
    EXPECT_EQ(hex(0x1f), "0x1f");
    EXPECT_EQ(hex(~0ull), "0xffffffffffffffff");
}

TEST(Text, Rfc3339WithAndWithoutMilliseconds) {
    EXPECT_TRUE(std::regex_match(now_rfc3339(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"))) << now_rfc3339();
    EXPECT_TRUE(std::regex_match(now_rfc3339(true), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
        << now_rfc3339(true);
}

// Ids as numbers only: 1-9 digits, and "UID[:GID]" with GID defaulting to
// the UID (vessel run --user, vesseld --vmm-user and --state-group).
TEST(ParseId, NumbersOfAtMostNineDigits) {
    EXPECT_EQ(parse_id("0"), 0u);
    EXPECT_EQ(parse_id("65534"), 65534u);
    EXPECT_EQ(parse_id("999999999"), 999999999u);
    for (const char* bad : {"", "1234567890", "-1", "+1", "12a", " 1", "nobody"}) EXPECT_FALSE(parse_id(bad)) << bad;
    EXPECT_EQ(parse_id_pair("1234:5678"), std::pair(1234u, 5678u));
    EXPECT_EQ(parse_id_pair("4321"), std::pair(4321u, 4321u));
    for (const char* bad : {"", ":", "1:", ":2", "1:2:3", "root", "1:root"}) EXPECT_FALSE(parse_id_pair(bad)) << bad;
}

}  // namespace
}  // namespace vessel
