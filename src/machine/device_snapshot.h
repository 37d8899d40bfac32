// Device state in a full machine's snapshot (docs/snapshot-format.md,
// sections 7 and 8): the encoding of the devices' plain state structs and of
// KVM's in-kernel PIC, I/O APIC, PIT and clock. Decoding bounds every count
// and length; the devices' restore() and KVM check the values themselves.
#pragma once

#include <linux/kvm.h>

#include <array>

#include "base/result.h"
#include "devices/legacy/cmos.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "devices/virtio/mmio_transport.h"
#include "kvm/kvm.h"
#include "state/format.h"

namespace vessel::machine {

void put_serial(state::Writer& w, const devices::legacy::SerialState& s);
Result<devices::legacy::SerialState> get_serial(state::Reader& r);
void put_cmos(state::Writer& w, const devices::legacy::CmosState& s);
Result<devices::legacy::CmosState> get_cmos(state::Reader& r);
void put_i8042(state::Writer& w, const devices::legacy::I8042State& s);
Result<devices::legacy::I8042State> get_i8042(state::Reader& r);
void put_transport(state::Writer& w, const devices::virtio::MmioTransportState& s);
Result<devices::virtio::MmioTransportState> get_transport(state::Reader& r);

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
Result<KvmDeviceState> get_kvm_devices(state::Reader& r);
// The irqchips and the PIT, then the clock: guest time (kvmclock) goes on
// from the snapshot's value, not from the host's present.
Result<> apply_kvm_devices(kvm::Vm& vm, const KvmDeviceState& s);

}  // namespace vessel::machine
