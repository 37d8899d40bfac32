#include "devices/rate_limiter.h"

#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <string>

#include "base/size.h"

namespace vessel::devices {

uint64_t monotonic_ns() {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
}

namespace {
constexpr uint64_t kNsPerSec = 1'000'000'000ull;
constexpr uint64_t kMaxTokens = uint64_t(INT64_MAX) / 4;
}  // namespace

TokenBucket::TokenBucket(uint64_t rate, uint64_t burst, uint64_t now_ns)
    : rate_(std::min(rate, kMaxTokens)), last_ns_(now_ns) {
    if (rate_ == 0) return;
    burst_ = burst ? std::min(burst, kMaxTokens) : std::max<uint64_t>(rate_ / 10, 1);
    tokens_ = int64_t(burst_);  // start full: a fresh device may burst at once
}

void TokenBucket::refill(uint64_t now_ns) {
    if (now_ns <= last_ns_) return;
    uint64_t elapsed = now_ns - last_ns_;
    unsigned __int128 add = (unsigned __int128)elapsed * rate_ / kNsPerSec;
    if (add == 0) return;                                        // keep last_ns_ so fractions of a token accumulate
    if (add > (unsigned __int128)(int64_t(burst_) - tokens_)) {  // full for a while: time beyond that is lost
        tokens_ = int64_t(burst_);
        last_ns_ = now_ns;
        return;
    }
    tokens_ += int64_t(add);
    // Advance only by the time the whole tokens account for.
    last_ns_ += uint64_t((unsigned __int128)add * kNsPerSec / rate_);
}

int64_t TokenBucket::tokens(uint64_t now_ns) {
    refill(now_ns);
    return tokens_;
}

bool TokenBucket::can_take(uint64_t cost, uint64_t now_ns) {
    if (unlimited()) return true;
    refill(now_ns);
    return tokens_ >= int64_t(std::min(cost, burst_));
}

void TokenBucket::take(uint64_t cost) {
    if (unlimited()) return;
    tokens_ -= int64_t(std::min(cost, kMaxTokens));
    // Bound the debt so arithmetic cannot overflow whatever the guest asks.
    tokens_ = std::max(tokens_, -int64_t(kMaxTokens));
}

uint64_t TokenBucket::wait_ns(uint64_t cost, uint64_t now_ns) {
    if (unlimited()) return 0;
    refill(now_ns);
    int64_t need = int64_t(std::min(cost, burst_)) - tokens_;
    if (need <= 0) return 0;
    unsigned __int128 ns = ((unsigned __int128)need * kNsPerSec + rate_ - 1) / rate_;
    uint64_t since = now_ns > last_ns_ ? now_ns - last_ns_ : 0;  // part of a token already earned
    uint64_t w = ns > since ? uint64_t(ns) - since : 1;
    return std::max<uint64_t>(w, 1);
}

Result<bool> parse_rate_limit_option(std::string_view key, std::string_view value, RateLimit& limit) {
    auto number = [&](uint64_t& out) -> Result<> {
        uint64_t v = 0;
        auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
        if (ec != std::errc() || p != value.data() + value.size() || v == 0)
            return fail(std::string(key) + "=" + std::string(value) + ": expected a positive number");
        out = v;
        return {};
    };
    auto size = [&](uint64_t& out) -> Result<> {
        std::string_view v = value;
        if (v.ends_with("/s")) v.remove_suffix(2);
        auto r = parse_size(v);
        if (!r) return fail(std::string(key) + "=" + std::string(value) + ": " + r.error().message);
        out = *r;
        return {};
    };
    Result<> r;
    if (key == "bw")
        r = size(limit.bytes_per_sec);
    else if (key == "bw_burst")
        r = size(limit.bytes_burst);
    else if (key == "iops")
        r = number(limit.ops_per_sec);
    else if (key == "iops_burst")
        r = number(limit.ops_burst);
    else
        return false;
    if (!r) return std::unexpected(r.error());
    return true;
}

RateLimiter::RateLimiter(RateLimit limit, Clock clock) : clock_(std::move(clock)) {
    uint64_t now = clock_();
    bytes_ = TokenBucket(limit.bytes_per_sec, limit.bytes_burst, now);
    ops_ = TokenBucket(limit.ops_per_sec, limit.ops_burst, now);
}

bool RateLimiter::try_consume(uint64_t ops, uint64_t bytes) {
    if (!enabled()) return true;
    uint64_t now = clock_();
    if (!ops_.can_take(ops, now) || !bytes_.can_take(bytes, now)) return false;
    ops_.take(ops);
    bytes_.take(bytes);
    return true;
}

void RateLimiter::charge(uint64_t ops, uint64_t bytes) {
    ops_.take(ops);
    bytes_.take(bytes);
}

uint64_t RateLimiter::wait_ns(uint64_t ops, uint64_t bytes) {
    uint64_t now = clock_();
    return std::max(ops_.wait_ns(ops, now), bytes_.wait_ns(bytes, now));
}

int RateLimiter::timer_fd() {
    if (!timer_) timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    return timer_.get();
}

void RateLimiter::arm(uint64_t ops, uint64_t bytes) {
    if (timer_fd() < 0) return;
    uint64_t ns = std::max<uint64_t>(wait_ns(ops, bytes), 1000);
    itimerspec its{};
    its.it_value.tv_sec = time_t(ns / kNsPerSec);
    its.it_value.tv_nsec = long(ns % kNsPerSec);
    if (::timerfd_settime(timer_.get(), 0, &its, nullptr) == 0) armed_ = true;
}

void RateLimiter::ack() {
    uint64_t expirations;
    if (timer_) [[maybe_unused]]
        auto r = ::read(timer_.get(), &expirations, sizeof expirations);
    armed_ = false;
}

}  // namespace vessel::devices
