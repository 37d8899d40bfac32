// What a full machine's snapshot holds besides its memory, as values: the
// configuration it recorded and each component's record (docs/snapshot-
// format.md, "Full machines"). full_vm.cc gathers a FullVmRecord from the
// machine and builds a machine from one; this file turns it into sections
// and back, checking what can be checked before anything is built.
#pragma once

#include <linux/kvm.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "cpu/vcpu_state.h"
#include "devices/legacy/cmos.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/net.h"
#include "machine/full_vm.h"
#include "machine/kvm_chips_state.h"
#include "machine/snapshot_dir.h"
#include "state/format.h"

namespace vessel::machine {

struct FullVmRecord {
    // Section 1, the configuration: as given, plus what the machine made of it.
    FullVmConfig config;
    std::string kernel_cmdline;  // final, with the virtio-mmio entries
    std::vector<uint64_t> disk_sectors;
    std::optional<devices::virtio::MacAddress> mac;
    // Section 6: every vCPU, in order.
    std::vector<cpu::VcpuState> vcpus;
    // Section 7: KVM's in-kernel chips and clock.
    KvmDeviceState chips;
    // Section 8: the VMM's devices, virtio transports in slot order.
    devices::legacy::SerialState serial;
    devices::legacy::CmosState cmos;
    devices::legacy::I8042State i8042;
    std::vector<devices::virtio::MmioTransportState> transports;
};

extern const std::vector<state::Section> kFullSections;

// Section 1's JSON (snapshot_dir's write adds its "snapshot" member).
nlohmann::json full_config_json(const FullVmRecord& record);
// Sections 6-8.
state::Sections full_records(const FullVmRecord& record);

// Decodes the newest snapshot of a chain and checks it against itself and
// this host: memory size against the layout, a record per vCPU, each disk
// present with the size the guest knew. Errors name the directory.
Result<FullVmRecord> decode_full_snapshot(const snapshot::Loaded& newest);

// The snapshot's vCPU may use only CPU features this host's KVM offers
// (restoring on another CPU model would fault in the guest, or worse).
Result<> check_cpuid(const std::vector<kvm_cpuid_entry2>& saved, const std::vector<kvm_cpuid_entry2>& host);

}  // namespace vessel::machine
