// The full machine's in-kernel chips in a snapshot (docs/snapshot-format.md,
// section 7): KVM's PIC, I/O APIC and PIT, and its clock. Decoding checks
// what the machine model fixes (chip order, the I/O APIC's address, PIT
// channel modes and counts); KVM checks the rest when they are applied.
#pragma once

#include <linux/kvm.h>

#include <array>

#include "base/result.h"
#include "kvm/kvm.h"
#include "state/format.h"

namespace vessel::machine {

// KVM's VM-wide device state.
struct KvmDeviceState {
    std::array<kvm_irqchip, 3> irqchips{};  // PIC master, PIC slave, I/O APIC
    kvm_pit_state2 pit{};
    kvm_clock_data clock{};
};
Result<KvmDeviceState> capture_kvm_devices(const kvm::Vm& vm);
void put_kvm_devices(state::Writer& w, const KvmDeviceState& s);
// Checks what the machine model fixes (chip order, the I/O APIC's address,
// PIT channel modes and counts).
state::RecordResult<KvmDeviceState> get_kvm_devices(state::Reader& r);
// The irqchips and the PIT, then the clock: guest time (kvmclock) goes on
// from the snapshot's value, not from the host's present.
state::RecordResult<> apply_kvm_devices(kvm::Vm& vm, const KvmDeviceState& s);

}  // namespace vessel::machine
