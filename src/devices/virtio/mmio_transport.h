// The virtio-mmio transport, version 2 ("modern", virtio 1.x section 4.2.2):
// the register file a guest driver programs, as a BusDevice.
//
// Wiring into a machine (the machine owns KVM; this file never sees it):
//
//   auto t = MmioTransport::create(mem, loop, std::move(device), irq);
//   bus.insert(base, MmioTransport::kSize, *t);
//   cmdline += " " + mmio_cmdline_fragment(base, MmioTransport::kSize, gsi);
//   // interrupt: `irq` is called whenever the device raises its line; the
//   //   machine passes [fd = irqfd.get()] { uint64_t one = 1; write(fd, &one, 8); }
//   //   for a KVM irqfd bound to `gsi` (or eventfd_trigger(fd) below).
//   // notifications: for q in 0..t->num_queues()-1, register a KVM ioeventfd
//   //   with fd = t->queue_notify_fd(q), addr = base + kQueueNotifyOffset,
//   //   len = 4, datamatch = q. Those eventfds are already on `loop`, so a
//   //   notification goes guest -> KVM -> eventfd -> I/O thread without a VM exit
//   //   to user space. Without ioeventfd the QueueNotify write reaches write()
//   //   below, which signals the same eventfd: behaviour is identical.
//
// Threads: register accesses come from vCPU threads, queue processing runs on
// the event loop's thread; one mutex per transport serialises them. Destroying
// a transport while the loop runs is safe (callbacks hold weak references).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "devices/bus.h"
#include "devices/event_loop.h"
#include "devices/virtio/device.h"
#include "memory/guest_memory.h"

namespace vessel::devices::virtio {

// Device status bits (section 2.1).
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// InterruptStatus bits.
inline constexpr uint32_t kIsrUsedBuffer = 1;
inline constexpr uint32_t kIsrConfigChange = 2;

// Register offsets (section 4.2.2).
namespace mmio {
inline constexpr uint64_t kMagic = 0x000, kVersion = 0x004, kDeviceId = 0x008, kVendorId = 0x00c;
inline constexpr uint64_t kDeviceFeatures = 0x010, kDeviceFeaturesSel = 0x014;
inline constexpr uint64_t kDriverFeatures = 0x020, kDriverFeaturesSel = 0x024;
inline constexpr uint64_t kQueueSel = 0x030, kQueueNumMax = 0x034, kQueueNum = 0x038;
inline constexpr uint64_t kQueueReady = 0x044, kQueueNotify = 0x050;
inline constexpr uint64_t kInterruptStatus = 0x060, kInterruptAck = 0x064, kStatus = 0x070;
inline constexpr uint64_t kQueueDescLow = 0x080, kQueueDescHigh = 0x084;
inline constexpr uint64_t kQueueDriverLow = 0x090, kQueueDriverHigh = 0x094;
inline constexpr uint64_t kQueueDeviceLow = 0x0a0, kQueueDeviceHigh = 0x0a4;
inline constexpr uint64_t kShmSel = 0x0ac, kShmLenLow = 0x0b0, kShmLenHigh = 0x0b4;
inline constexpr uint64_t kShmBaseLow = 0x0b8, kShmBaseHigh = 0x0bc;
inline constexpr uint64_t kConfigGeneration = 0x0fc, kConfig = 0x100;
inline constexpr uint32_t kMagicValue = 0x74726976;  // "virt"
inline constexpr uint32_t kVendor = 0x4c535356;      // "VSSL"
}  // namespace mmio

// The transport's register state, its queues and the device's identity, for
// snapshots. `config` is the device's configuration space (a disk's
// capacity, a NIC's MAC, a vsock CID): restore requires the re-created
// device to present the same bytes.
struct MmioTransportState {
    uint32_t device_id = 0;
    uint64_t offered_features = 0, driver_features = 0;
    uint32_t device_features_sel = 0, driver_features_sel = 0, queue_sel = 0;
    uint32_t status = 0, interrupt_status = 0;
    uint32_t config_generation = 0;
    bool active = false, failed = false;
    std::vector<QueueState> queues;
    std::vector<uint8_t> config;
};

class MmioTransport final : public BusDevice, private Transport, public std::enable_shared_from_this<MmioTransport> {
public:
    using Interrupt = std::function<void()>;
    static constexpr uint64_t kSize = 0x1000;
    static constexpr uint64_t kQueueNotifyOffset = mmio::kQueueNotify;

    // `memory` and `loop` must outlive the transport. `interrupt` is called
    // with the transport's lock held; it must not call back into it.
    static Result<std::shared_ptr<MmioTransport>> create(memory::GuestMemory& memory, EventLoop& loop,
                                                         std::unique_ptr<VirtioDevice> device, Interrupt interrupt);
    ~MmioTransport() override;

    // BusDevice: guest register accesses.
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    unsigned num_queues() const { return unsigned(queues_.size()); }
    // The eventfd that stands for "the driver notified queue q" (see top).
    int queue_notify_fd(unsigned q) const { return q < notify_fds_.size() ? notify_fds_[q].get() : -1; }

    // Snapshots. The caller keeps the event loop from running callbacks
    // while the machine is saved (nothing else may touch guest memory).
    MmioTransportState save() const;
    // Loads a saved state onto a transport fresh from create() (status 0).
    // Everything is checked first: the device type, offered features and
    // configuration must match the re-created device; the driver's features
    // must be a subset of the offer; status and interrupt bits must be
    // defined ones; each queue as Queue::restore. A device that was live is
    // activated again (VirtioDevice::activate_restored) and queues with
    // buffers waiting are processed once the event loop runs.
    Result<> restore(const MmioTransportState& state);

    // Observers (tests, metrics). Take the lock.
    uint32_t status() const;
    uint32_t interrupt_status() const;
    bool device_failed() const;
    VirtioDevice& device() { return *device_; }

private:
    MmioTransport(memory::GuestMemory& memory, EventLoop& loop, std::unique_ptr<VirtioDevice> device,
                  Interrupt interrupt);
    // Transport (for the device; called with mu_ held).
    memory::GuestMemory& memory() override { return memory_; }
    Queue& queue(unsigned index) override { return queues_.at(index); }
    uint64_t acked_features() const override { return driver_features_; }
    void signal_used(unsigned index) override;
    void fail(const std::string& why) override;
    bool failed() const override { return failed_; }
    Result<> watch(int fd, uint32_t events, std::function<void(uint32_t)> callback) override;
    void unwatch(int fd) override;

    uint32_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint32_t value);
    void write_status(uint32_t value);
    void on_notify(unsigned q);
    void reset_locked();
    Queue* selected_queue();

    memory::GuestMemory& memory_;
    EventLoop& loop_;
    std::unique_ptr<VirtioDevice> device_;
    Interrupt interrupt_;
    mutable std::mutex mu_;

    std::vector<Queue> queues_;
    std::vector<Fd> notify_fds_;
    std::vector<int> watched_fds_;
    uint64_t offered_features_ = 0, driver_features_ = 0;
    uint32_t device_features_sel_ = 0, driver_features_sel_ = 0, queue_sel_ = 0;
    uint32_t status_ = 0, isr_ = 0;
    bool active_ = false, failed_ = false;
    uint64_t generation_ = 0;  // bumped at reset; stale watch callbacks compare it
};

// "virtio_mmio.device=4K@0xd0000000:5" for the guest kernel command line.
std::string mmio_cmdline_fragment(uint64_t base, uint64_t size, unsigned irq);

// An Interrupt that signals an eventfd (e.g. a KVM irqfd). `fd` is not owned.
MmioTransport::Interrupt eventfd_trigger(int fd);

}  // namespace vessel::devices::virtio
