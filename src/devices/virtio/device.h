// What a virtio device model implements, and what its transport offers it.
//
// A device (blk, net, rng, vsock) knows its type, features, queues and config
// space, and processes its queues. It never touches registers: the transport
// (mmio_transport.h) owns the register file, feature negotiation, the queues'
// configuration and the interrupt, and calls the device on the I/O thread with
// the transport's lock held, so device code is single-threaded.
#pragma once

#include <sys/epoll.h>  // watch() takes epoll event flags

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace vessel::devices::virtio {

// Feature bits shared by all devices (virtio 1.x, section 6).
inline constexpr uint64_t kFIndirectDesc = 1ull << 28;
inline constexpr uint64_t kFEventIdx = 1ull << 29;
inline constexpr uint64_t kFVersion1 = 1ull << 32;

// Device IDs (section 5).
inline constexpr uint32_t kIdNet = 1;
inline constexpr uint32_t kIdBlock = 2;
inline constexpr uint32_t kIdRng = 4;
inline constexpr uint32_t kIdVsock = 19;

// The services a device gets from its transport while it is active.
class Transport {
public:
    virtual ~Transport() = default;
    // Device writes to guest memory go through Queue::add_used(), which records
    // them for dirty tracking (snapshots, migration).
    virtual memory::GuestMemory& memory() = 0;
    virtual Queue& queue(unsigned index) = 0;
    virtual uint64_t acked_features() const = 0;
    // Raises the used-buffer interrupt for queue `index` unless the driver
    // suppressed it.
    virtual void signal_used(unsigned index) = 0;
    // Puts the device into the failed state (DEVICE_NEEDS_RESET, one log line);
    // no queue is processed until the driver resets the device.
    virtual void fail(const std::string& why) = 0;
    virtual bool failed() const = 0;
    // Watches a back-end fd on the I/O thread. The callback runs with the
    // transport's lock held and only while the device is active and not failed.
    // Watches end at device reset.
    virtual Result<> watch(int fd, uint32_t events, std::function<void(uint32_t)> callback) = 0;
    // Stops watching `fd`; call before closing it.
    virtual void unwatch(int fd) = 0;
};

// What a device did with a chain that drain_queue() handed it.
enum class Served {
    kDone,    // answered, or the device failed meanwhile (drain_queue checks)
    kNotYet,  // cannot be served now (a rate limit): back on the ring, stop
};

// Hands each chain the driver has made available on queue `index` to `serve`,
// in ring order, until the ring is empty, a ring's worth was served, or
// `serve` answers kNotYet. A malformed ring fails the device (`what` prefixes the reason); a device that
// fails while serving stops at once. The driver is interrupted once at the
// end if a chain was answered, never after a failure.
template <class Serve>
void drain_queue(Transport& t, unsigned index, const std::string& what, Serve&& serve) {
    Queue& q = t.queue(index);
    bool used = false;
    // At most a ring's worth per call: a driver whose rings overlap (the
    // device's own writes moving the available index) must not keep this
    // thread here forever. A chain made available meanwhile comes with a
    // notification of its own, which calls again.
    const uint32_t budget = q.size;
    for (uint32_t n = 0; n < budget; ++n) {
        auto next = q.pop(t.memory());
        if (!next) {
            t.fail(what + next.error().message);
            return;
        }
        if (!*next) break;
        if (serve(**next) == Served::kNotYet) {
            q.undo_pop();
            break;
        }
        if (t.failed()) return;
        used = true;
    }
    if (used) t.signal_used(index);
}

class VirtioDevice {
public:
    virtual ~VirtioDevice() = default;

    virtual uint32_t device_id() const = 0;
    // Device-specific features; the transport adds VIRTIO_F_VERSION_1 and
    // VIRTIO_F_INDIRECT_DESC.
    virtual uint64_t features() const = 0;
    // Maximum size of each queue; the vector's length is the queue count.
    virtual std::vector<uint16_t> queue_max_sizes() const = 0;
    // The device-specific configuration space (offset 0 = register 0x100).
    // Out-of-range bytes read as zero and are ignored on write.
    virtual std::span<const uint8_t> config() const = 0;
    virtual void write_config(uint64_t /*offset*/, std::span<const uint8_t> /*data*/) {}

    // DRIVER_OK: the queues the driver enabled are validated and ready. An
    // error fails the device.
    virtual Result<> activate(Transport& transport) = 0;
    // A snapshot of the live device was restored: the transport is active
    // again, its queues as the driver left them. Back-end state that did not
    // survive (open connections) is the device's to report to the driver.
    virtual Result<> activate_restored(Transport& transport) { return activate(transport); }
    // The driver notified queue `index` (on the I/O thread).
    virtual void process_queue(unsigned index) = 0;
    // Device reset (status 0) or failure: drop back-end state of the session.
    virtual void reset() = 0;
    // Short name for log lines ("virtio-blk").
    virtual const char* name() const = 0;
};

}  // namespace vessel::devices::virtio
