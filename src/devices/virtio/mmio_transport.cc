#include "devices/virtio/mmio_transport.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace vessel::devices::virtio {

Result<std::shared_ptr<MmioTransport>> MmioTransport::create(memory::GuestMemory& memory, EventLoop& loop,
                                                             std::unique_ptr<VirtioDevice> device,
                                                             Interrupt interrupt) {
    if (!device) return vessel::fail("virtio-mmio: no device");
    std::shared_ptr<MmioTransport> t(new MmioTransport(memory, loop, std::move(device), std::move(interrupt)));
    for (unsigned q = 0; q < t->queues_.size(); ++q) {
        Fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!fd) return fail_errno("eventfd for virtio queue notifications");
        std::weak_ptr<MmioTransport> weak = t;
        if (auto r = loop.add(fd.get(), EPOLLIN,
                              [weak, q](uint32_t) {
                                  if (auto self = weak.lock()) self->on_notify(q);
                              });
            !r)
            return wrap(std::string(t->device_->name()) + ": queue notification", r.error());
        t->notify_fds_.push_back(std::move(fd));
    }
    return t;
}

MmioTransport::MmioTransport(memory::GuestMemory& memory, EventLoop& loop, std::unique_ptr<VirtioDevice> device,
                             Interrupt interrupt)
    : memory_(memory), loop_(loop), device_(std::move(device)), interrupt_(std::move(interrupt)) {
    for (uint16_t max : device_->queue_max_sizes()) {
        queues_.emplace_back(std::min(max, kMaxQueueSize));
        queues_.back().reset();
    }
    offered_features_ = device_->features() | kFVersion1 | kFIndirectDesc;
}

MmioTransport::~MmioTransport() {
    std::lock_guard lock(mu_);
    for (auto& fd : notify_fds_) loop_.remove(fd.get());
    for (int fd : watched_fds_) loop_.remove(fd);
    if (active_) device_->reset();
}

uint32_t MmioTransport::status() const {
    std::lock_guard lock(mu_);
    return status_;
}

uint32_t MmioTransport::interrupt_status() const {
    std::lock_guard lock(mu_);
    return isr_;
}

bool MmioTransport::device_failed() const {
    std::lock_guard lock(mu_);
    return failed_;
}

MmioTransportState MmioTransport::save() const {
    std::lock_guard lock(mu_);
    MmioTransportState s;
    s.device_id = device_->device_id();
    s.offered_features = offered_features_;
    s.driver_features = driver_features_;
    s.device_features_sel = device_features_sel_;
    s.driver_features_sel = driver_features_sel_;
    s.queue_sel = queue_sel_;
    s.status = status_;
    s.interrupt_status = isr_;
    s.config_generation = 0;  // what kConfigGeneration reads: the config space never changes
    s.active = active_;
    s.failed = failed_;
    for (const auto& q : queues_) s.queues.push_back(q.save());
    auto cfg = device_->config();
    s.config.assign(cfg.begin(), cfg.end());
    return s;
}

Result<> MmioTransport::restore(const MmioTransportState& s) {
    std::lock_guard lock(mu_);
    const std::string name = device_->name();
    auto bad = [&](const std::string& why) { return vessel::fail(name + ": " + why, EINVAL); };
    if (status_ != 0 || active_) return bad("restore onto a device the guest already set up");
    if (s.device_id != device_->device_id())
        return bad("the snapshot has virtio device type " + std::to_string(s.device_id) + " here");
    if (s.offered_features != offered_features_)
        return bad("the device offers different features than when the snapshot was taken");
    auto cfg = device_->config();
    if (s.config.size() != cfg.size() || !std::equal(cfg.begin(), cfg.end(), s.config.begin()))
        return bad("the device's configuration differs from the snapshot's");
    if (s.driver_features & ~offered_features_) return bad("the driver's features were never offered");
    constexpr uint32_t kKnownStatus =
        kStatusAcknowledge | kStatusDriver | kStatusDriverOk | kStatusFeaturesOk | kStatusNeedsReset | kStatusFailed;
    if (s.status & ~kKnownStatus) return bad("undefined device status bits");
    if (s.interrupt_status & ~(kIsrUsedBuffer | kIsrConfigChange)) return bad("undefined interrupt status bits");
    if (s.config_generation != 0) return bad("unexpected configuration generation");
    if (s.failed && !(s.status & kStatusNeedsReset)) return bad("failed without DEVICE_NEEDS_RESET");
    if (s.queues.size() != queues_.size())
        return bad("the snapshot has " + std::to_string(s.queues.size()) + " queues, the device " +
                   std::to_string(queues_.size()));
    std::vector<Queue> queues = queues_;
    for (size_t i = 0; i < queues.size(); ++i)
        if (auto r = queues[i].restore(s.queues[i], memory_); !r)
            return bad("queue " + std::to_string(i) + ": " + r.error().message);

    queues_ = std::move(queues);
    driver_features_ = s.driver_features;
    device_features_sel_ = s.device_features_sel;
    driver_features_sel_ = s.driver_features_sel;
    queue_sel_ = s.queue_sel;
    status_ = s.status;
    isr_ = s.interrupt_status;
    failed_ = s.failed;
    active_ = s.active;
    if (active_ && !failed_) {
        if (auto r = device_->activate_restored(*this); !r) return bad("activation: " + r.error().message);
        // Buffers the driver queued before the snapshot are processed now.
        for (unsigned q = 0; q < queues_.size(); ++q)
            if (queues_[q].ready && queues_[q].has_available(memory_)) {
                uint64_t one = 1;
                [[maybe_unused]] auto r = ::write(notify_fds_[q].get(), &one, sizeof one);
            }
    }
    return {};
}

void MmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
    std::lock_guard lock(mu_);
    std::memset(data.data(), 0, data.size());
    if (offset >= mmio::kConfig) {
        auto cfg = device_->config();
        uint64_t off = offset - mmio::kConfig;
        if (off < cfg.size() && data.size() <= cfg.size() - off)
            std::memcpy(data.data(), cfg.data() + off, data.size());
        return;
    }
    // The register file takes aligned 32-bit accesses only (section 4.2.2.2).
    if (data.size() != 4 || offset % 4) return;
    uint32_t v = read_register(offset);
    std::memcpy(data.data(), &v, 4);
}

void MmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
    std::lock_guard lock(mu_);
    if (offset >= mmio::kConfig) {
        auto cfg = device_->config();
        uint64_t off = offset - mmio::kConfig;
        if (off < cfg.size() && data.size() <= cfg.size() - off) device_->write_config(off, data);
        return;
    }
    if (data.size() != 4 || offset % 4) return;
    uint32_t v;
    std::memcpy(&v, data.data(), 4);
    write_register(offset, v);
}

Queue* MmioTransport::selected_queue() { return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr; }

uint32_t MmioTransport::read_register(uint64_t offset) {
    Queue* q = selected_queue();
    switch (offset) {
        case mmio::kMagic: return mmio::kMagicValue;
        case mmio::kVersion: return 2;
        case mmio::kDeviceId: return device_->device_id();
        case mmio::kVendorId: return mmio::kVendor;
        case mmio::kDeviceFeatures:
            return device_features_sel_ < 2 ? uint32_t(offered_features_ >> (32 * device_features_sel_)) : 0;
        case mmio::kQueueNumMax: return q ? q->max_size() : 0;
        case mmio::kQueueReady: return q && q->ready ? 1 : 0;
        case mmio::kInterruptStatus: return isr_;
        case mmio::kStatus: return status_;
        case mmio::kShmLenLow:
        case mmio::kShmLenHigh:
        case mmio::kShmBaseLow:
        case mmio::kShmBaseHigh: return 0xffffffff;  // no shared memory regions
        case mmio::kConfigGeneration: return 0;      // the config space never changes under the driver
        default: return 0;
    }
}

void MmioTransport::write_register(uint64_t offset, uint32_t value) {
    Queue* q = selected_queue();
    // Queue registers may change only while the queue is disabled and the
    // device not yet live (section 4.2.3.2).
    bool queue_writable = q && !q->ready && !(status_ & kStatusDriverOk);
    auto set_low = [](uint64_t& r, uint32_t v) { r = (r & ~0xffffffffull) | v; };
    auto set_high = [](uint64_t& r, uint32_t v) { r = (r & 0xffffffffull) | (uint64_t(v) << 32); };
    switch (offset) {
        case mmio::kDeviceFeaturesSel: device_features_sel_ = value; break;
        case mmio::kDriverFeaturesSel: driver_features_sel_ = value; break;
        case mmio::kDriverFeatures:
            if (status_ & kStatusFeaturesOk || driver_features_sel_ >= 2) break;
            if (driver_features_sel_ == 0)
                set_low(driver_features_, value);
            else
                set_high(driver_features_, value);
            break;
        case mmio::kQueueSel: queue_sel_ = value; break;
        case mmio::kQueueNum:
            if (queue_writable) q->size = value > 0xffff ? 0 : uint16_t(value);  // checked at QueueReady
            break;
        case mmio::kQueueDescLow:
            if (queue_writable) set_low(q->desc_gpa, value);
            break;
        case mmio::kQueueDescHigh:
            if (queue_writable) set_high(q->desc_gpa, value);
            break;
        case mmio::kQueueDriverLow:
            if (queue_writable) set_low(q->avail_gpa, value);
            break;
        case mmio::kQueueDriverHigh:
            if (queue_writable) set_high(q->avail_gpa, value);
            break;
        case mmio::kQueueDeviceLow:
            if (queue_writable) set_low(q->used_gpa, value);
            break;
        case mmio::kQueueDeviceHigh:
            if (queue_writable) set_high(q->used_gpa, value);
            break;
        case mmio::kQueueReady:
            if (!q || failed_) break;
            if (value == 0) {
                q->ready = false;
            } else if (!q->ready && !(status_ & kStatusDriverOk)) {
                if (auto r = q->validate(memory_); !r) {
                    fail("queue " + std::to_string(queue_sel_) + ": " + r.error().message);
                    break;
                }
                q->indirect_allowed = driver_features_ & kFIndirectDesc;
                q->ready = true;
            }
            break;
        case mmio::kQueueNotify:
            // Reached only without a KVM ioeventfd: take the same path as one.
            if (value < notify_fds_.size()) {
                uint64_t one = 1;
                [[maybe_unused]] auto r = ::write(notify_fds_[value].get(), &one, sizeof one);
            }
            break;
        case mmio::kInterruptAck: isr_ &= ~value; break;
        case mmio::kStatus: write_status(value); break;
        case mmio::kShmSel: break;
        default: break;
    }
}

void MmioTransport::write_status(uint32_t value) {
    if (value == 0) {
        reset_locked();
        return;
    }
    uint32_t added = value & ~status_;
    if (added & kStatusFeaturesOk) {
        // Accept only a subset of what we offered, and only modern drivers.
        bool ok = !(driver_features_ & ~offered_features_) && (driver_features_ & kFVersion1);
        if (!ok) value &= ~kStatusFeaturesOk;
    }
    status_ = value | (failed_ ? kStatusNeedsReset : 0);
    if ((added & kStatusDriverOk) && !active_ && !failed_) {
        if (!(status_ & kStatusFeaturesOk)) {
            fail("DRIVER_OK without FEATURES_OK");
            return;
        }
        active_ = true;
        if (auto r = device_->activate(*this); !r) {
            fail("activation: " + r.error().message);
            return;
        }
        // Buffers the driver queued before DRIVER_OK are processed now.
        for (unsigned q = 0; q < queues_.size(); ++q)
            if (queues_[q].ready && queues_[q].has_available(memory_)) {
                uint64_t one = 1;
                [[maybe_unused]] auto r = ::write(notify_fds_[q].get(), &one, sizeof one);
            }
    }
}

void MmioTransport::reset_locked() {
    // Unwatch before the device closes its fds, so no fd number is reused while
    // the loop still holds it.
    for (int fd : watched_fds_) loop_.remove(fd);
    watched_fds_.clear();
    if (active_) device_->reset();
    for (auto& q : queues_) q.reset();
    driver_features_ = 0;
    device_features_sel_ = driver_features_sel_ = queue_sel_ = 0;
    status_ = isr_ = 0;
    active_ = failed_ = false;
    ++generation_;
}

void MmioTransport::on_notify(unsigned q) {
    uint64_t count;
    [[maybe_unused]] auto r = ::read(notify_fds_[q].get(), &count, sizeof count);
    std::lock_guard lock(mu_);
    if (!active_ || failed_ || !queues_[q].ready) return;
    device_->process_queue(q);
}

void MmioTransport::signal_used(unsigned index) {
    // Order the used index store before reading the driver's suppression flag.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (index < queues_.size() && queues_[index].interrupt_suppressed(memory_)) return;
    isr_ |= kIsrUsedBuffer;
    if (interrupt_) interrupt_();
}

void MmioTransport::fail(const std::string& why) {
    if (failed_) return;
    failed_ = true;
    status_ |= kStatusNeedsReset;
    std::fprintf(stderr, "vessel: %s: device failed, needs reset: %s\n", device_->name(), why.c_str());
    // Back-end fds stop being watched (a level-triggered fd would otherwise spin
    // the I/O thread); the device's next activation watches them again.
    for (int fd : watched_fds_) loop_.remove(fd);
    watched_fds_.clear();
    // The driver learns about NEEDS_RESET through a configuration-change interrupt.
    isr_ |= kIsrConfigChange;
    if (interrupt_) interrupt_();
}

Result<> MmioTransport::watch(int fd, uint32_t events, std::function<void(uint32_t)> callback) {
    std::weak_ptr<MmioTransport> weak = weak_from_this();
    uint64_t gen = generation_;
    auto r = loop_.add(fd, events, [weak, gen, cb = std::move(callback)](uint32_t ev) {
        auto self = weak.lock();
        if (!self) return;
        std::lock_guard lock(self->mu_);
        if (self->generation_ != gen || !self->active_ || self->failed_) return;
        cb(ev);
    });
    if (!r) return r;
    watched_fds_.push_back(fd);
    return {};
}

void MmioTransport::unwatch(int fd) {
    std::erase(watched_fds_, fd);
    loop_.remove(fd);
}

std::string mmio_cmdline_fragment(uint64_t base, uint64_t size, unsigned irq) {
    char buf[96];
    if (size % 1024 == 0)
        std::snprintf(buf, sizeof buf, "virtio_mmio.device=%lluK@%#llx:%u", (unsigned long long)(size / 1024),
                      (unsigned long long)base, irq);
    else
        std::snprintf(buf, sizeof buf, "virtio_mmio.device=%llu@%#llx:%u", (unsigned long long)size,
                      (unsigned long long)base, irq);
    return buf;
}

MmioTransport::Interrupt eventfd_trigger(int fd) {
    return [fd] {
        uint64_t one = 1;
        [[maybe_unused]] auto r = ::write(fd, &one, sizeof one);
    };
}

}  // namespace vessel::devices::virtio
