// virtio-blk (section 5.2) backed by a raw host file: read, write, flush,
// get-id; read-only mode; a token-bucket rate limiter (one op per request,
// bytes of data).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"
#include "devices/rate_limiter.h"
#include "devices/virtio/device.h"

namespace vessel::devices::virtio {

inline constexpr uint64_t kBlkFSegMax = 1ull << 2;
inline constexpr uint64_t kBlkFRo = 1ull << 5;
inline constexpr uint64_t kBlkFFlush = 1ull << 9;

inline constexpr uint32_t kBlkTIn = 0, kBlkTOut = 1, kBlkTFlush = 4, kBlkTGetId = 8;
inline constexpr uint8_t kBlkSOk = 0, kBlkSIoErr = 1, kBlkSUnsupp = 2;
inline constexpr uint64_t kSectorSize = 512;

struct BlockConfig {
    std::string path;
    bool read_only = false;
    RateLimit limit;
};

// Parses the --disk value "PATH[,ro][,bw=RATE][,bw_burst=BYTES][,iops=N][,iops_burst=N]".
Result<BlockConfig> parse_disk_spec(std::string_view spec);

class Block final : public VirtioDevice {
public:
    static constexpr uint16_t kQueueSize = 256;

    static Result<std::unique_ptr<Block>> open(const BlockConfig& config, Clock clock = monotonic_ns);

    uint32_t device_id() const override { return kIdBlock; }
    uint64_t features() const override;
    std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
    std::span<const uint8_t> config() const override { return config_; }
    Result<> activate(Transport& transport) override;
    void process_queue(unsigned index) override;
    void reset() override;
    const char* name() const override { return "virtio-blk"; }

    uint64_t capacity_sectors() const { return capacity_; }
    RateLimiter& limiter() { return limiter_; }

private:
    Block() = default;
    // Executes one request; false when the rate limiter deferred it.
    bool handle(const DescriptorChain& chain);

    Fd file_;
    bool read_only_ = false;
    uint64_t capacity_ = 0;  // in 512-byte sectors
    std::array<uint8_t, 64> config_{};
    std::string id_;
    RateLimiter limiter_;
    Transport* transport_ = nullptr;
};

}  // namespace vessel::devices::virtio
