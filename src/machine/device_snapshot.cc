#include "machine/device_snapshot.h"

#include "arch/x86/mptable.h"

namespace vessel::machine {
namespace {

using state::Reader;
using state::Writer;

constexpr uint32_t kMaxQueues = 16;       // our devices have at most 3
constexpr size_t kMaxConfigSpace = 3840;  // 0x100..0x1000 of the MMIO window

}  // namespace

void put_serial(Writer& w, const devices::legacy::SerialState& s) {
    for (uint8_t v : {s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm}) w.u8(v);
    w.u8(s.fifo_enabled);
    w.u8(s.thr_interrupt_pending);
    w.bytes(s.rx.data(), s.rx.size());
}

Result<devices::legacy::SerialState> get_serial(Reader& r) {
    devices::legacy::SerialState s;
    for (uint8_t* v : {&s.ier, &s.lcr, &s.mcr, &s.scr, &s.dll, &s.dlm}) *v = r.u8();
    s.fifo_enabled = r.u8() != 0;
    s.thr_interrupt_pending = r.u8() != 0;
    std::string rx = r.str(devices::legacy::Serial::kRxFifoSize);
    if (!r.ok()) return fail("serial state is malformed", EINVAL);
    s.rx.assign(rx.begin(), rx.end());
    return s;
}

void put_cmos(Writer& w, const devices::legacy::CmosState& s) {
    w.u8(s.index);
    w.bytes(s.regs.data(), s.regs.size());
}

Result<devices::legacy::CmosState> get_cmos(Reader& r) {
    devices::legacy::CmosState s;
    s.index = r.u8();
    r.blob(s.regs.data(), s.regs.size());
    if (!r.ok()) return fail("CMOS state is malformed", EINVAL);
    return s;
}

void put_i8042(Writer& w, const devices::legacy::I8042State& s) {
    w.u8(s.command_byte);
    w.u8(s.output.has_value());
    w.u8(s.output.value_or(0));
    w.u8(s.pending_command);
}

Result<devices::legacy::I8042State> get_i8042(Reader& r) {
    devices::legacy::I8042State s;
    s.command_byte = r.u8();
    bool has_output = r.u8() != 0;
    uint8_t output = r.u8();
    if (has_output) s.output = output;
    s.pending_command = r.u8();
    if (!r.ok()) return fail("i8042 state is malformed", EINVAL);
    return s;
}

void put_transport(Writer& w, const devices::virtio::MmioTransportState& s) {
    w.u32(s.device_id);
    w.u64(s.offered_features);
    w.u64(s.driver_features);
    w.u32(s.device_features_sel);
    w.u32(s.driver_features_sel);
    w.u32(s.queue_sel);
    w.u32(s.status);
    w.u32(s.interrupt_status);
    w.u32(s.config_generation);
    w.u8(s.active);
    w.u8(s.failed);
    w.u32(static_cast<uint32_t>(s.queues.size()));
    for (const auto& q : s.queues) {
        w.u16(q.size);
        w.u8(q.ready);
        w.u64(q.desc_gpa);
        w.u64(q.avail_gpa);
        w.u64(q.used_gpa);
        w.u8(q.indirect_allowed);
        w.u16(q.next_avail);
        w.u16(q.next_used);
    }
    w.bytes(s.config.data(), s.config.size());
}

Result<devices::virtio::MmioTransportState> get_transport(Reader& r) {
    devices::virtio::MmioTransportState s;
    s.device_id = r.u32();
    s.offered_features = r.u64();
    s.driver_features = r.u64();
    s.device_features_sel = r.u32();
    s.driver_features_sel = r.u32();
    s.queue_sel = r.u32();
    s.status = r.u32();
    s.interrupt_status = r.u32();
    s.config_generation = r.u32();
    s.active = r.u8() != 0;
    s.failed = r.u8() != 0;
    uint32_t n = r.u32();
    if (!r.ok() || n > kMaxQueues) return fail("virtio transport state is malformed", EINVAL);
    for (uint32_t i = 0; i < n; ++i) {
        devices::virtio::QueueState q;
        q.size = r.u16();
        q.ready = r.u8() != 0;
        q.desc_gpa = r.u64();
        q.avail_gpa = r.u64();
        q.used_gpa = r.u64();
        q.indirect_allowed = r.u8() != 0;
        q.next_avail = r.u16();
        q.next_used = r.u16();
        s.queues.push_back(q);
    }
    std::string config = r.str(kMaxConfigSpace);
    if (!r.ok()) return fail("virtio transport state is malformed", EINVAL);
    s.config.assign(config.begin(), config.end());
    return s;
}

Result<KvmDeviceState> capture_kvm_devices(const kvm::Vm& vm) {
    KvmDeviceState s;
    const uint32_t chips[] = {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC};
    for (size_t i = 0; i < 3; ++i) {
        auto c = vm.get_irqchip(chips[i]);
        if (!c) return std::unexpected(c.error());
        s.irqchips[i] = *c;
    }
    auto pit = vm.get_pit2();
    if (!pit) return std::unexpected(pit.error());
    s.pit = *pit;
    auto clock = vm.get_clock();
    if (!clock) return std::unexpected(clock.error());
    s.clock = *clock;
    return s;
}

void put_kvm_devices(Writer& w, const KvmDeviceState& s) {
    for (const auto& c : s.irqchips) w.bytes(&c, sizeof c);
    w.bytes(&s.pit, sizeof s.pit);
    w.bytes(&s.clock, sizeof s.clock);
}

Result<KvmDeviceState> get_kvm_devices(Reader& r) {
    KvmDeviceState s;
    for (auto& c : s.irqchips) r.blob(&c, sizeof c);
    r.blob(&s.pit, sizeof s.pit);
    r.blob(&s.clock, sizeof s.clock);
    if (!r.ok()) return fail("in-kernel device state is malformed", EINVAL);
    const uint32_t chips[] = {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC};
    for (size_t i = 0; i < 3; ++i)
        if (s.irqchips[i].chip_id != chips[i]) return fail("in-kernel device state: irqchips out of order", EINVAL);
    if (s.irqchips[2].chip.ioapic.base_address != arch::x86::kIoApicAddress)
        return fail("in-kernel device state: the I/O APIC is not at its address in this machine", EINVAL);
    // Modes 0-5, or 0xff: KVM's value for a channel never programmed.
    for (const auto& c : s.pit.channels)
        if (c.count > 0x10000 || (c.mode > 5 && c.mode != 0xff) || c.bcd > 1 || c.gate > 1 || c.rw_mode > 3 ||
            c.read_state > 4 || c.write_state > 4)
            return fail("in-kernel device state: a PIT channel holds values an 8254 cannot", EINVAL);
    return s;
}

Result<> apply_kvm_devices(kvm::Vm& vm, const KvmDeviceState& s) {
    auto refused = [](const char* what, const Error& e) {
        return fail(std::string("KVM refused the snapshot's ") + what + " (" + e.message + ")", EINVAL);
    };
    for (const auto& c : s.irqchips)
        if (auto r = vm.set_irqchip(c); !r) return refused("irqchip state", r.error());
    if (auto r = vm.set_pit2(s.pit); !r) return refused("PIT state", r.error());
    kvm_clock_data clock{};
    clock.clock = s.clock.clock;  // flags 0: exactly this value, not adjusted for the time since
    if (auto r = vm.set_clock(clock); !r) return refused("clock", r.error());
    return {};
}

}  // namespace vessel::machine
