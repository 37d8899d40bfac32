// virtio-rng / entropy device (section 5.4): fills the driver's buffers from
// the host's getrandom().
#pragma once

#include <memory>

#include "devices/virtio/device.h"

namespace vessel::devices::virtio {

class Rng final : public VirtioDevice {
public:
    static constexpr uint16_t kQueueSize = 64;
    // Bytes served per request at most: bounds the work one chain can ask for.
    static constexpr uint32_t kMaxRequest = 64 * 1024;

    uint32_t device_id() const override { return kIdRng; }
    uint64_t features() const override { return 0; }
    std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
    std::span<const uint8_t> config() const override { return {}; }
    Result<> activate(Transport& transport) override {
        transport_ = &transport;
        return {};
    }
    void process_queue(unsigned index) override;
    void reset() override { transport_ = nullptr; }
    const char* name() const override { return "virtio-rng"; }

private:
    Transport* transport_ = nullptr;
};

}  // namespace vessel::devices::virtio
