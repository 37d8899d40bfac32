// One vCPU's architectural state in a snapshot, shared by thin VMs and full
// machines (docs/snapshot-format.md, "vCPU record").
//
// The record is what thin snapshots have always written — registers, special
// registers, FPU, XSAVE, XCRs, pending events, MSRs — followed by a flag byte.
// Thin VMs write 0 there. Full machines write 1 and add what an in-kernel
// irqchip and a guest kernel need: LAPIC, MP state, debug registers and the
// CPUID table the vCPU was given.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "kvm/kvm.h"
#include "state/format.h"

namespace vessel::cpu {

// MSRs carried for a thin VM's user-mode guest.
extern const std::vector<uint32_t> kThinVcpuMsrs;
// MSRs carried for a full machine: those a Linux kernel programs, including
// KVM's paravirtual ones (kvmclock, async PF, steal time, PV EOI). Ordered
// for KVM_SET_MSRS: TSC before the TSC deadline, the async-PF vector before
// enabling async PF.
extern const std::vector<uint32_t> kFullVcpuMsrs;

inline constexpr size_t kMaxCpuidEntries = 256;  // KVM_MAX_CPUID_ENTRIES

// What a full machine's vCPU record adds (VcpuState::Machine). Not nested in
// VcpuState: clang decides whether std::optional<Machine> can be emplaced
// before a nested struct's member initializers are parsed, and says no.
struct VcpuMachineState {
    kvm_lapic_state lapic{};
    uint32_t mp_state = KVM_MP_STATE_RUNNABLE;
    kvm_debugregs debugregs{};
    std::vector<kvm_cpuid_entry2> cpuid;
};

struct VcpuState {
    kvm_regs regs{};
    kvm_sregs sregs{};
    kvm_fpu fpu{};
    std::vector<uint32_t> xsave = std::vector<uint32_t>(1024);  // the 4 KiB legacy area
    kvm_xcrs xcrs{};
    kvm_vcpu_events events{};
    std::vector<std::pair<uint32_t, uint64_t>> msrs;  // only those KVM would read

    // Full machines only.
    using Machine = VcpuMachineState;
    std::optional<Machine> machine;
};

// Reads a stopped vCPU (not inside KVM_RUN). `msrs`: which MSRs to try; the
// ones KVM will not read are left out. `cpuid`: the table the vCPU was given,
// for a full machine (then LAPIC, MP state and debug registers are read too);
// nullptr for a thin VM.
Result<VcpuState> capture_vcpu(kvm::Vcpu& vcpu, std::span<const uint32_t> msrs,
                               const std::vector<kvm_cpuid_entry2>* cpuid);

void put_vcpu(state::Writer& w, const VcpuState& s);
// Decodes one record; MSR indices must be in `allowed`, and the flag byte
// must say thin (`machine` false) or full (`machine` true). Does not require
// the reader to be at its end (full machines store several records).
state::RecordResult<VcpuState> get_vcpu(state::Reader& r, std::span<const uint32_t> allowed, bool machine);

// Loads the state into a new vCPU (its CPUID already set for thin VMs; set
// here from the record for full machines). KVM validates the architectural
// state; its refusal is an error naming the piece ("KVM_SET_SREGS: Invalid
// argument"). An MSR KVM refuses with the snapshot's value but accepts with
// its current one is an error; one this host cannot write at all is skipped.
state::RecordResult<> apply_vcpu(kvm::Vcpu& vcpu, const VcpuState& s);

}  // namespace vessel::cpu
