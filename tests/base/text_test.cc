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

}  // namespace
}  // namespace vessel
