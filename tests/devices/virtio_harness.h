// A guest-side virtio driver for tests and benchmarks: lays out split
// virtqueues in a memory::GuestMemory and programs an MmioTransport by
// register accesses, as a Linux guest's virtio_mmio driver would.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <vector>

#include "devices/event_loop.h"
#include "devices/virtio/mmio_transport.h"
#include "memory/guest_memory.h"

namespace vessel::testing {

namespace virtio = devices::virtio;

struct Seg {
    uint64_t gpa;
    uint32_t len;
    bool device_writes;
};

class VirtioGuest {
public:
    struct Vq {
        uint16_t size = 0;
        uint64_t desc = 0, avail = 0, used = 0;
        uint16_t avail_idx = 0, used_seen = 0, next_desc = 0;
    };

    explicit VirtioGuest(uint64_t ram = 16 << 20) {
        mem = std::make_unique<memory::GuestMemory>(std::move(*memory::GuestMemory::create(ram)));
        loop = std::move(*devices::EventLoop::create());
    }

    bool attach(std::unique_ptr<virtio::VirtioDevice> device) {
        auto t = virtio::MmioTransport::create(*mem, *loop, std::move(device), [this] { ++interrupts; });
        if (!t) return false;
        transport = *t;
        return true;
    }

    uint32_t r32(uint64_t off) {
        uint32_t v = 0;
        transport->read(off, {reinterpret_cast<uint8_t*>(&v), 4});
        return v;
    }
    void w32(uint64_t off, uint32_t v) { transport->write(off, {reinterpret_cast<const uint8_t*>(&v), 4}); }

    uint64_t alloc(uint64_t len, uint64_t align = 16) {
        next_ = (next_ + align - 1) / align * align;
        uint64_t at = next_;
        next_ += len;
        return at;
    }
    uint8_t* host(uint64_t gpa, uint64_t len = 1) { return mem->host(gpa, len); }

    uint64_t device_features() {
        w32(virtio::mmio::kDeviceFeaturesSel, 0);
        uint64_t lo = r32(virtio::mmio::kDeviceFeatures);
        w32(virtio::mmio::kDeviceFeaturesSel, 1);
        return lo | uint64_t(r32(virtio::mmio::kDeviceFeatures)) << 32;
    }

    // ACKNOWLEDGE, DRIVER, features, FEATURES_OK. False when the device refused.
    bool negotiate(uint64_t accept = ~0ull) {
        w32(virtio::mmio::kStatus, 0);
        w32(virtio::mmio::kStatus, virtio::kStatusAcknowledge);
        w32(virtio::mmio::kStatus, virtio::kStatusAcknowledge | virtio::kStatusDriver);
        uint64_t f = device_features() & accept;
        w32(virtio::mmio::kDriverFeaturesSel, 0);
        w32(virtio::mmio::kDriverFeatures, uint32_t(f));
        w32(virtio::mmio::kDriverFeaturesSel, 1);
        w32(virtio::mmio::kDriverFeatures, uint32_t(f >> 32));
        w32(virtio::mmio::kStatus, virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk);
        return r32(virtio::mmio::kStatus) & virtio::kStatusFeaturesOk;
    }

    bool setup_queue(unsigned q, uint16_t size) {
        if (vqs.size() <= q) vqs.resize(q + 1);
        Vq& v = vqs[q];
        v = Vq{};
        v.size = size;
        v.desc = alloc(16ull * size, 16);
        v.avail = alloc(6 + 2ull * size, 2);
        v.used = alloc(6 + 8ull * size, 4);
        w32(virtio::mmio::kQueueSel, q);
        w32(virtio::mmio::kQueueNum, size);
        w32(virtio::mmio::kQueueDescLow, uint32_t(v.desc));
        w32(virtio::mmio::kQueueDescHigh, uint32_t(v.desc >> 32));
        w32(virtio::mmio::kQueueDriverLow, uint32_t(v.avail));
        w32(virtio::mmio::kQueueDriverHigh, uint32_t(v.avail >> 32));
        w32(virtio::mmio::kQueueDeviceLow, uint32_t(v.used));
        w32(virtio::mmio::kQueueDeviceHigh, uint32_t(v.used >> 32));
        w32(virtio::mmio::kQueueReady, 1);
        return r32(virtio::mmio::kQueueReady) == 1;
    }

    void driver_ok() { w32(virtio::mmio::kStatus, r32(virtio::mmio::kStatus) | virtio::kStatusDriverOk); }

    // Full bring-up: negotiate, every queue at `size`, DRIVER_OK.
    bool start(uint16_t size, uint64_t accept = ~0ull) {
        if (!negotiate(accept)) return false;
        for (unsigned q = 0; q < transport->num_queues(); ++q)
            if (!setup_queue(q, size)) return false;
        driver_ok();
        return (r32(virtio::mmio::kStatus) & virtio::kStatusDriverOk) && !transport->device_failed();
    }

    void write_desc(unsigned q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next) {
        uint8_t* d = host(vqs[q].desc + 16ull * i, 16);
        std::memcpy(d, &addr, 8);
        std::memcpy(d + 8, &len, 4);
        std::memcpy(d + 12, &flags, 2);
        std::memcpy(d + 14, &next, 2);
    }
    void push_avail(unsigned q, uint16_t head) {
        Vq& v = vqs[q];
        std::memcpy(host(v.avail + 4 + 2ull * (v.avail_idx % v.size), 2), &head, 2);
        ++v.avail_idx;
        set_avail_idx(q, v.avail_idx);
    }
    void set_avail_idx(unsigned q, uint16_t idx) { std::memcpy(host(vqs[q].avail + 2, 2), &idx, 2); }

    // A chain over consecutive descriptors (wrapping); returns its head.
    uint16_t add_chain(unsigned q, const std::vector<Seg>& segs) {
        Vq& v = vqs[q];
        uint16_t head = v.next_desc % v.size;
        for (size_t i = 0; i < segs.size(); ++i) {
            uint16_t idx = (v.next_desc + i) % v.size;
            uint16_t flags =
                (segs[i].device_writes ? virtio::kDescFWrite : 0) | (i + 1 < segs.size() ? virtio::kDescFNext : 0);
            write_desc(q, idx, segs[i].gpa, segs[i].len, flags, uint16_t((idx + 1) % v.size));
        }
        v.next_desc = uint16_t((v.next_desc + segs.size()) % v.size);
        push_avail(q, head);
        return head;
    }

    // Notifies queue q and runs the I/O loop until it is idle.
    void notify(unsigned q) {
        w32(virtio::mmio::kQueueNotify, q);
        run();
    }
    void run() {
        for (int i = 0; i < 64; ++i) {
            auto n = loop->poll(0);
            if (!n || *n == 0) break;
        }
    }

    uint16_t used_idx(unsigned q) {
        uint16_t v;
        std::memcpy(&v, host(vqs[q].used + 2, 2), 2);
        return v;
    }
    // The next used element (id, len) the guest has not seen yet.
    std::optional<std::pair<uint32_t, uint32_t>> next_used(unsigned q) {
        Vq& v = vqs[q];
        if (used_idx(q) == v.used_seen) return std::nullopt;
        uint32_t e[2];
        std::memcpy(e, host(v.used + 4 + 8ull * (v.used_seen % v.size), 8), 8);
        ++v.used_seen;
        return std::make_pair(e[0], e[1]);
    }

    bool failed() { return transport->device_failed(); }
    bool needs_reset() { return r32(virtio::mmio::kStatus) & virtio::kStatusNeedsReset; }

    std::unique_ptr<memory::GuestMemory> mem;
    std::unique_ptr<devices::EventLoop> loop;
    std::shared_ptr<virtio::MmioTransport> transport;
    std::vector<Vq> vqs;
    int interrupts = 0;

private:
    uint64_t next_ = 0x10000;
};

}  // namespace vessel::testing
