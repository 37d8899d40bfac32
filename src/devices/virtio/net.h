// virtio-net (section 5.1) on a TAP device or any fd that carries one frame
// per read/write, each prefixed by the 12-byte virtio_net_hdr_v1 (a TAP opened
// by open_tap() does exactly that; tests use a SOCK_SEQPACKET socketpair).
// Queue 0 receives (host -> guest), queue 1 transmits. Each direction has its
// own rate limiter built from the same RateLimit.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"
#include "devices/rate_limiter.h"
#include "devices/virtio/device.h"

namespace vessel::devices::virtio {

inline constexpr uint64_t kNetFCsum = 1ull << 0;
inline constexpr uint64_t kNetFGuestCsum = 1ull << 1;
inline constexpr uint64_t kNetFMac = 1ull << 5;
inline constexpr uint64_t kNetFGuestTso4 = 1ull << 7;
inline constexpr uint64_t kNetFGuestTso6 = 1ull << 8;
inline constexpr uint64_t kNetFHostTso4 = 1ull << 11;
inline constexpr uint64_t kNetFHostTso6 = 1ull << 12;
inline constexpr size_t kNetHdrSize = 12;  // virtio_net_hdr_v1
// Largest frame either way: a 64 KiB GSO packet plus Ethernet and virtio headers.
inline constexpr size_t kNetMaxFrame = 65562 + kNetHdrSize;

using MacAddress = std::array<uint8_t, 6>;

struct NetConfig {
    std::string tap;
    std::optional<MacAddress> mac;  // random locally administered when absent
    RateLimit limit;                // applied to rx and tx separately
};

// Parses the --net value "tap=NAME[,mac=52:54:00:12:34:56][,bw=..][,iops=..]...".
Result<NetConfig> parse_net_spec(std::string_view spec);
Result<MacAddress> parse_mac(std::string_view text);

// Opens (or creates, when allowed) TAP interface `name` with IFF_TAP |
// IFF_NO_PI | IFF_VNET_HDR, a 12-byte vnet header, non-blocking.
Result<Fd> open_tap(const std::string& name);

class Net final : public VirtioDevice {
public:
    static constexpr uint16_t kQueueSize = 256;
    enum Backend { kTap, kFrameSocket };

    static Result<std::unique_ptr<Net>> create(Fd backend, Backend kind, std::optional<MacAddress> mac,
                                               RateLimit limit = {}, Clock clock = monotonic_ns);

    uint32_t device_id() const override { return kIdNet; }
    uint64_t features() const override;
    std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }
    std::span<const uint8_t> config() const override { return config_; }
    Result<> activate(Transport& transport) override;
    void process_queue(unsigned index) override;
    void reset() override;
    const char* name() const override { return "virtio-net"; }

    const MacAddress& mac() const { return mac_; }
    struct Counters {
        uint64_t rx_frames = 0, rx_bytes = 0, tx_frames = 0, tx_bytes = 0, tx_dropped = 0;
    };
    const Counters& counters() const { return counters_; }

private:
    Net() = default;
    void process_rx();
    void process_tx();

    Fd backend_;
    Backend kind_ = kTap;
    MacAddress mac_{};
    std::array<uint8_t, 6> config_{};
    RateLimiter rx_limiter_, tx_limiter_;
    Transport* transport_ = nullptr;
    bool rx_pending_ = false;  // the back-end may have frames (edge-triggered)
    Counters counters_;
};

}  // namespace vessel::devices::virtio
