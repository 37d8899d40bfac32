#include "machine/kvm_chips_state.h"

#include "arch/x86/mptable.h"

namespace vessel::machine {

using state::Reader;
using state::Writer;

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

state::RecordResult<KvmDeviceState> get_kvm_devices(Reader& r) {
    KvmDeviceState s;
    for (auto& c : s.irqchips) r.blob(&c, sizeof c);
    r.blob(&s.pit, sizeof s.pit);
    r.blob(&s.clock, sizeof s.clock);
    if (!r.ok()) return state::record_error(state::RecordFault::kTruncated, "in-kernel device state is malformed");
    const uint32_t chips[] = {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC};
    for (size_t i = 0; i < 3; ++i)
        if (s.irqchips[i].chip_id != chips[i]) return state::malformed("in-kernel device state: irqchips out of order");
    if (s.irqchips[2].chip.ioapic.base_address != arch::x86::kIoApicAddress)
        return state::malformed("in-kernel device state: the I/O APIC is not at its address in this machine");
    // Modes 0-5, or 0xff: KVM's value for a channel never programmed.
    for (const auto& c : s.pit.channels)
        if (c.count > 0x10000 || (c.mode > 5 && c.mode != 0xff) || c.bcd > 1 || c.gate > 1 || c.rw_mode > 3 ||
            c.read_state > 4 || c.write_state > 4)
            return state::malformed("in-kernel device state: a PIT channel holds values an 8254 cannot");
    return s;
}

state::RecordResult<> apply_kvm_devices(kvm::Vm& vm, const KvmDeviceState& s) {
    auto refused = [](const char* what, const Error& e) {
        return state::record_error(state::RecordFault::kRefused,
                                   std::string("KVM refused the snapshot's ") + what + " (" + e.message + ")");
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
