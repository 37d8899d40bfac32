#include "devices/rate_limiter.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace vessel::devices {
namespace {

constexpr uint64_t kSec = 1'000'000'000;

TEST(TokenBucket, StartsFullAndRefillsAtTheRate) {
    TokenBucket b(1000, 100, 0);
    EXPECT_EQ(b.tokens(0), 100);
    EXPECT_TRUE(b.can_take(100, 0));
    b.take(100);
    EXPECT_FALSE(b.can_take(1, 0));
    EXPECT_EQ(b.tokens(kSec / 100), 10);  // 10 ms at 1000/s
    EXPECT_EQ(b.tokens(kSec), 100);       // capped at the burst
}

TEST(TokenBucket, FractionsOfATokenAccumulate) {
    TokenBucket b(3, 1, 0);  // one token every 333.3 ms
    b.take(1);
    uint64_t t = 0;
    int granted = 0;
    for (int i = 0; i < 3000; ++i) {  // 3 s in 1 ms steps
        t += kSec / 1000;
        if (b.can_take(1, t)) {
            b.take(1);
            ++granted;
        }
    }
    EXPECT_EQ(granted, 9);
}

TEST(TokenBucket, OversizedRequestsRunIntoDebtAndWaitForIt) {
    TokenBucket b(1000, 100, 0);
    EXPECT_TRUE(b.can_take(500, 0));  // larger than the burst: needs a full bucket
    b.take(500);
    EXPECT_EQ(b.tokens(0), -400);
    EXPECT_FALSE(b.can_take(1, kSec / 10 * 4 - 1));
    EXPECT_TRUE(b.can_take(1, kSec / 1000 * 401));
    EXPECT_EQ(b.wait_ns(1, kSec / 1000 * 401), 0u);
}

TEST(TokenBucket, WaitMatchesTheRefill) {
    TokenBucket b(100, 10, 0);
    b.take(10);
    uint64_t w = b.wait_ns(5, 0);
    EXPECT_EQ(w, kSec / 20);  // 5 tokens at 100/s
    EXPECT_FALSE(b.can_take(5, w - 1));
    EXPECT_TRUE(b.can_take(5, w));
}

TEST(TokenBucket, DefaultBurstIsATenthOfASecond) {
    TokenBucket b(5000, 0, 0);
    EXPECT_EQ(b.burst(), 500u);
    TokenBucket tiny(3, 0, 0);
    EXPECT_EQ(tiny.burst(), 1u);
    TokenBucket none;
    EXPECT_TRUE(none.unlimited());
    EXPECT_TRUE(none.can_take(~0ull, 0));
}

TEST(RateLimiter, AdmitsOnlyWhenBothBucketsAgreeAndTakesNothingOtherwise) {
    uint64_t now = 0;
    RateLimit l;
    l.bytes_per_sec = 1 << 20;
    l.bytes_burst = 64 << 10;
    l.ops_per_sec = 10;
    l.ops_burst = 2;
    RateLimiter r(l, [&] { return now; });
    EXPECT_TRUE(r.try_consume(1, 32 << 10));
    EXPECT_TRUE(r.try_consume(1, 32 << 10));
    EXPECT_FALSE(r.try_consume(1, 0));  // out of ops
    now += kSec / 10;                   // one op, and 100 KiB capped at the 64 KiB burst
    EXPECT_EQ(r.bytes_bucket().tokens(now), 64 << 10);
    EXPECT_TRUE(r.try_consume(1, (64 << 10) + 1));  // bigger than the burst: admitted when full
    EXPECT_EQ(r.bytes_bucket().tokens(now), -1);    // ...into debt
    EXPECT_EQ(r.ops_bucket().tokens(now), 0);
    EXPECT_FALSE(r.try_consume(1, 1));
    EXPECT_GT(r.wait_ns(1, 1), 0u);
}

TEST(RateLimiter, RefusalLeavesTokensUntouched) {
    uint64_t now = 0;
    RateLimit l;
    l.bytes_per_sec = 1000;
    l.bytes_burst = 1000;
    l.ops_per_sec = 1;
    l.ops_burst = 1;
    RateLimiter r(l, [&] { return now; });
    r.charge(1, 0);                                 // ops empty
    EXPECT_FALSE(r.try_consume(1, 500));            // refused on ops...
    EXPECT_EQ(r.bytes_bucket().tokens(now), 1000);  // ...and bytes untouched
}

TEST(RateLimiter, LongRunRateMatchesTheConfiguration) {
    uint64_t now = 0;
    RateLimit l;
    l.bytes_per_sec = 10 << 20;
    RateLimiter r(l, [&] { return now; });
    uint64_t bytes = 0;
    while (now < 10 * kSec) {
        if (r.try_consume(1, 128 << 10))
            bytes += 128 << 10;
        else
            now += r.wait_ns(1, 128 << 10);
    }
    double rate = double(bytes) / 10.0;
    EXPECT_NEAR(rate, double(10 << 20), double(10 << 20) * 0.02);
}

TEST(RateLimitOptions, ParsesKeys) {
    RateLimit l;
    EXPECT_TRUE(*parse_rate_limit_option("bw", "10M/s", l));
    EXPECT_EQ(l.bytes_per_sec, 10u << 20);
    EXPECT_TRUE(*parse_rate_limit_option("bw_burst", "1M", l));
    EXPECT_EQ(l.bytes_burst, 1u << 20);
    EXPECT_TRUE(*parse_rate_limit_option("iops", "250", l));
    EXPECT_TRUE(*parse_rate_limit_option("iops_burst", "25", l));
    EXPECT_EQ(l.ops_burst, 25u);
    EXPECT_FALSE(*parse_rate_limit_option("ro", "", l));
    EXPECT_FALSE(parse_rate_limit_option("iops", "0", l));
    EXPECT_FALSE(parse_rate_limit_option("iops", "12x", l));
    EXPECT_FALSE(parse_rate_limit_option("bw", "fast", l));
}

TEST(RateLimiter, TimerFiresWhenTokensReturn) {
    RateLimit l;
    l.ops_per_sec = 100;
    l.ops_burst = 1;
    RateLimiter r(l);
    ASSERT_TRUE(r.try_consume(1, 0));
    EXPECT_FALSE(r.try_consume(1, 0));
    ASSERT_GE(r.timer_fd(), 0);
    uint64_t start = monotonic_ns();
    r.arm(1, 0);
    EXPECT_TRUE(r.armed());
    uint64_t expirations;
    while (::read(r.timer_fd(), &expirations, 8) != 8) ::usleep(200);
    uint64_t waited = monotonic_ns() - start;
    EXPECT_GE(waited, 5'000'000u);  // ~10 ms at 100 ops/s
    EXPECT_LT(waited, 500'000'000u);
    EXPECT_TRUE(r.try_consume(1, 0));
}

}  // namespace
}  // namespace vessel::devices
