#include "base/size.h"

#include <gtest/gtest.h>

namespace vessel {

TEST(ParseSize, AcceptsSuffixes) {
    EXPECT_EQ(parse_size("4096").value(), 4096u);
    EXPECT_EQ(parse_size("64M").value(), 64ull << 20);
    EXPECT_EQ(parse_size("1G").value(), 1ull << 30);
    EXPECT_EQ(parse_size("2KiB").value(), 2048u);
    EXPECT_EQ(parse_size("1t").value(), 1ull << 40);
}

TEST(ParseSize, RejectsJunkZeroAndOverflow) {
    for (const char* bad : {"", "M", "0", "12X", "1MM", "-1", "99999999999999999999", "17179869184T"})
        EXPECT_FALSE(parse_size(bad).has_value()) << bad;
}

}  // namespace vessel
