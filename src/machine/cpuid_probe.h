// Does `cpuid` in a thin guest's user mode trap to KVM on this host, or does
// the CPU answer it by itself?
//
// Hosts differ, and the same host kernel version has done both
// (../shared/PLATFORM.md): on some PVM kernels the instruction runs natively
// at CPL3 and gives the host's answers; on others, as on every
// hardware-assisted host, KVM traps it and answers from the vCPU's CPUID
// table as KVM holds it, which may lack features KVM does not give guests
// (KVM_SET_CPUID2 trims them). A thin guest's rewritten `cpuid` sites answer
// from a table in guest memory (thin/guest_entry.h) and must agree with its
// un-rewritten ones, so the VMM has to know which kind of host it is on.
// The probe asks a throwaway VM once per boot.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "kvm/kvm.h"

namespace vessel::machine {

struct CpuidRegs {
    uint32_t eax, ebx, ecx, edx;
    bool operator==(const CpuidRegs&) const = default;
};

// Runs `cpuid` (leaf, subleaf) once at CPL3 in a throwaway VM whose vCPU has
// `table` (about 1 ms: a VM, a vCPU and four MMIO exits).
Result<CpuidRegs> cpuid_in_guest(const kvm::System& sys, const std::vector<kvm_cpuid_entry2>& table, uint32_t leaf,
                                 uint32_t subleaf);

// True when a guest's `cpuid` is answered from its vCPU's table: `table`
// with the first brand-string leaf changed, asked through cpuid_in_guest.
Result<bool> cpuid_traps(const kvm::System& sys, const std::vector<kvm_cpuid_entry2>& table);

// cpuid_traps through a per-boot cache file at `path` ("1" or "0"; empty
// path: no cache). A probe that fails is taken as "does not trap" (the
// answers rewritten sites had before the probe existed) and not cached.
bool cpuid_traps_cached(const kvm::System& sys, const std::vector<kvm_cpuid_entry2>& table, const std::string& path);

}  // namespace vessel::machine
