// KVM CPUID tables for vCPUs. A full machine's vCPUs see KVM's supported
// set, with the topology of N single-threaded cores in one package, the
// vCPU's own APIC ID, the hypervisor bit and KVM's paravirtual leaves. A thin
// guest's vCPU sees the host's own user-mode answers (with_host_answers).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

#include "arch/x86/host_cpuid.h"

namespace vessel::arch::x86 {

namespace cpuid_bit {
inline constexpr uint32_t kLeaf1EcxX2apic = 1u << 21, kLeaf1EcxTscDeadline = 1u << 24, kLeaf1EcxHypervisor = 1u << 31,
                          kLeaf1EdxHtt = 1u << 28, kExt1EcxCmpLegacy = 1u << 1;
}
inline constexpr uint32_t kKvmCpuidSignature = 0x40000000;
inline constexpr uint32_t kKvmCpuidFeatures = 0x40000001;
inline constexpr size_t kMaxKvmCpuidEntries = 256;  // KVM_MAX_CPUID_ENTRIES

// Number of bits an APIC ID needs to number `count` cores (0 for one).
unsigned topology_shift(unsigned count);

// Returns `supported` adjusted for vCPU `cpu_index` (also its APIC ID) of
// `cpu_count`. Leaves not listed by KVM are not invented, except the KVM
// signature leaf when KVM left it out.
std::vector<kvm_cpuid_entry2> build_vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported, unsigned cpu_index,
                                               unsigned cpu_count);

// The table of a thin guest's vCPU: KVM's `supported` table with every leaf
// and subleaf that `host` answers replaced by (or added as) the host's
// answer; leaves only KVM lists (its paravirtual range at 0x40000000, say)
// keep KVM's. A PVM host that traps `cpuid` at CPL3 answers the guest from
// this table as KVM holds it, which may lack some of the host's features
// (answers_as_held); a host that lets the CPU answer gives `host` itself.
// The guest-side entry code answers rewritten sites from whichever of the
// two the guest's other sites get (machine/cpuid_probe.h), so every question
// the guest-side table answers gets the same answer from both kinds of
// site, and any other question runs the real instruction at both. At most kMaxKvmCpuidEntries entries (KVM-only ones
// are dropped first), sorted by leaf and subleaf.
std::vector<kvm_cpuid_entry2> with_host_answers(const std::vector<kvm_cpuid_entry2>& supported,
                                                std::span<const CpuidAnswer> host);

// `answers` with the registers of each as `held` has them (KVM's table read
// back from the vCPU: a trapped `cpuid`'s answers, after KVM trimmed what
// it does not give guests and set the bits that follow CR4 and XCR0).
// Answers `held` lacks stay as they are.
std::vector<CpuidAnswer> answers_as_held(std::span<const CpuidAnswer> answers,
                                         const std::vector<kvm_cpuid_entry2>& held);

// The CR4 bits a table's answers promise a program: OSXSAVE when leaf 1
// reports it, PKE when leaf 7 reports OSPKE. KVM computes those two answer
// bits from the vCPU's CR4 whenever CR4 changes, so a trapped `cpuid` agrees
// with the table only when CR4 holds them.
uint64_t cr4_promised_by(const std::vector<kvm_cpuid_entry2>& table);

// The XCR0 of a thin guest's vCPU: the host's own (x87/SSE/AVX/AVX-512...),
// which a CPL3 guest runs with under PVM whatever KVM holds. KVM sizes leaf
// 0xd's answers by the value it holds, so it must be the same. Only what
// the table allows and KVM can give (`kvm_supported`, leaf 0xd of
// KVM_GET_SUPPORTED_CPUID: KVM refuses any other bit with EINVAL; a host
// whose CPU has MPX state that KVM does not virtualize is one such), and
// never less than x87+SSE.
uint64_t thin_xcr0(const std::vector<kvm_cpuid_entry2>& table, uint64_t kvm_supported);

// The size of a standard-format XSAVE image of the components in `xcr0`
// (a signal frame's FPU state), from this CPU's CPUID leaf 0xd: at least
// the legacy area and the header, at most KVM's 4 KiB XSAVE region.
uint32_t xsave_size(uint64_t xcr0);

// Finds a leaf/subleaf in a CPUID table (nullptr when missing).
const kvm_cpuid_entry2* find_cpuid(const std::vector<kvm_cpuid_entry2>& table, uint32_t function, uint32_t index = 0);

}  // namespace vessel::arch::x86
