// Token-bucket rate limiting for I/O devices: bytes per second and operations
// per second, each with its own burst.
//
// Semantics (docs/devices.md): a bucket holds up to `burst` tokens and refills
// continuously at `rate` tokens per second. A request is admitted when every
// bucket holds at least min(cost, burst) tokens; its whole cost is then taken,
// which may leave a bucket in debt (negative) when a single request is larger
// than the burst. The debt is repaid by refill before anything else is
// admitted, so the long-run rate never exceeds `rate` and no request size can
// deadlock the device.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"

namespace vessel::devices {

// Monotonic nanoseconds. Injectable so tests control time.
using Clock = std::function<uint64_t()>;
uint64_t monotonic_ns();

class TokenBucket {
public:
    TokenBucket() = default;  // unlimited
    // rate == 0: unlimited. burst == 0: rate/10 (100 ms worth), at least 1.
    TokenBucket(uint64_t rate, uint64_t burst, uint64_t now_ns);

    bool unlimited() const { return rate_ == 0; }
    uint64_t rate() const { return rate_; }
    uint64_t burst() const { return burst_; }
    int64_t tokens(uint64_t now_ns);

    // Whether `cost` would be admitted now.
    bool can_take(uint64_t cost, uint64_t now_ns);
    void take(uint64_t cost);  // unconditional; may go into debt
    // Nanoseconds until can_take(cost) turns true (0 when it already is).
    uint64_t wait_ns(uint64_t cost, uint64_t now_ns);

private:
    void refill(uint64_t now_ns);
    uint64_t rate_ = 0, burst_ = 0;
    int64_t tokens_ = 0;
    uint64_t last_ns_ = 0;
};

struct RateLimit {
    uint64_t bytes_per_sec = 0;  // 0: no byte limit
    uint64_t bytes_burst = 0;    // 0: default (100 ms worth)
    uint64_t ops_per_sec = 0;    // 0: no operation limit
    uint64_t ops_burst = 0;
    bool enabled() const { return bytes_per_sec || ops_per_sec; }
};

// Parses one "key=value" option of a device spec into `limit`: bw=, bw_burst=
// (sizes: 10M, 512K...), iops=, iops_burst= (plain numbers). Returns false when
// `key` is not a rate-limit key; an error when the value is malformed.
Result<bool> parse_rate_limit_option(std::string_view key, std::string_view value, RateLimit& limit);

class RateLimiter {
public:
    explicit RateLimiter(RateLimit limit = {}, Clock clock = monotonic_ns);

    bool enabled() const { return !bytes_.unlimited() || !ops_.unlimited(); }
    // Admits one request of `ops` operations and `bytes` bytes, taking its
    // tokens, or refuses it and takes nothing.
    bool try_consume(uint64_t ops, uint64_t bytes);
    // Takes tokens unconditionally (for costs known only after the fact).
    void charge(uint64_t ops, uint64_t bytes);
    uint64_t wait_ns(uint64_t ops, uint64_t bytes);

    // A timerfd (created on first use) for the owner to register on its event
    // loop: arm() makes it fire when a refused request would be admitted;
    // ack() consumes the expiry. -1 if the timer could not be created.
    int timer_fd();
    void arm(uint64_t ops, uint64_t bytes);
    void ack();
    bool armed() const { return armed_; }

    TokenBucket& bytes_bucket() { return bytes_; }
    TokenBucket& ops_bucket() { return ops_; }

private:
    Clock clock_;
    TokenBucket bytes_, ops_;
    Fd timer_;
    bool armed_ = false;
};

}  // namespace vessel::devices
