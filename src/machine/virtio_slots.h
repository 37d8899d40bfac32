// Where a full machine's virtio devices sit (its device manager): each
// device gets a 4 KiB MMIO window from kBase up, its own edge-triggered ISA
// IRQ from kFirstIrq up (an irqfd), an ioeventfd per queue so notifications
// skip user space, and its `virtio_mmio.device=` entry on the kernel
// command line. The order of attach() calls fixes each device's slot, so a
// restore that attaches the same devices in the same order finds them where
// the guest knows them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/bus.h"
#include "devices/event_loop.h"
#include "devices/virtio/mmio_transport.h"
#include "kvm/kvm.h"
#include "memory/guest_memory.h"

namespace vessel::machine {

class VirtioSlots {
public:
    static constexpr uint64_t kBase = 0xd0000000;
    static constexpr unsigned kFirstIrq = 5;

    struct Wiring {
        kvm::Vm* vm;
        devices::Bus* mmio;
        memory::GuestMemory* mem;
        devices::EventLoop* loop;
        // An eventfd bound to `gsi` as a KVM irqfd (the machine owns it).
        std::function<Result<int>(unsigned gsi)> add_irqfd;
    };
    explicit VirtioSlots(Wiring w) : w_(std::move(w)) {}

    // Puts `device` behind a transport in the next slot.
    Result<std::shared_ptr<devices::virtio::MmioTransport>> attach(
        std::unique_ptr<devices::virtio::VirtioDevice> device);
    // The devices' command-line entries, each with a leading space.
    const std::string& cmdline() const { return cmdline_; }

private:
    Wiring w_;
    unsigned used_ = 0;
    std::string cmdline_;
};

}  // namespace vessel::machine
