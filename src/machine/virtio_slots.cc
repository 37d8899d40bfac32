#include "machine/virtio_slots.h"

#include "arch/x86/mptable.h"

namespace vessel::machine {

namespace virtio = devices::virtio;

Result<std::shared_ptr<virtio::MmioTransport>> VirtioSlots::attach(std::unique_ptr<virtio::VirtioDevice> device) {
    const uint64_t base = kBase + used_ * virtio::MmioTransport::kSize;
    const unsigned irq = kFirstIrq + used_;
    if (irq >= arch::x86::kIoApicPins)
        return fail("too many virtio devices (at most " + std::to_string(arch::x86::kIoApicPins - kFirstIrq) + ")",
                    EINVAL);
    auto irqfd = w_.add_irqfd(irq);
    if (!irqfd) return std::unexpected(irqfd.error());
    auto t = virtio::MmioTransport::create(*w_.mem, *w_.loop, std::move(device), virtio::eventfd_trigger(*irqfd));
    if (!t) return std::unexpected(t.error());
    if (!w_.mmio->insert(base, virtio::MmioTransport::kSize, *t)) return fail("virtio-mmio window overlaps", EINVAL);
    for (unsigned q = 0; q < (*t)->num_queues(); ++q) {
        kvm_ioeventfd e{};
        e.datamatch = q;
        e.addr = base + virtio::MmioTransport::kQueueNotifyOffset;
        e.len = 4;
        e.fd = (*t)->queue_notify_fd(q);
        e.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
        if (auto r = w_.vm->ioeventfd(e); !r) return std::unexpected(r.error());
    }
    cmdline_ += " " + virtio::mmio_cmdline_fragment(base, virtio::MmioTransport::kSize, irq);
    ++used_;
    return *t;
}

}  // namespace vessel::machine
