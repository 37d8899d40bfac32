// The CPUID a full machine's vCPUs see: KVM's supported set, with the
// topology of N single-threaded cores in one package, the vCPU's own APIC ID,
// the hypervisor bit and KVM's paravirtual leaves.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace vessel::arch::x86 {

namespace cpuid_bit {
inline constexpr uint32_t kLeaf1EcxX2apic = 1u << 21, kLeaf1EcxTscDeadline = 1u << 24,
                          kLeaf1EcxHypervisor = 1u << 31, kLeaf1EdxHtt = 1u << 28,
                          kExt1EcxCmpLegacy = 1u << 1;
}
inline constexpr uint32_t kKvmCpuidSignature = 0x40000000;
inline constexpr uint32_t kKvmCpuidFeatures = 0x40000001;

// Number of bits an APIC ID needs to number `count` cores (0 for one).
unsigned topology_shift(unsigned count);

// Returns `supported` adjusted for vCPU `cpu_index` (also its APIC ID) of
// `cpu_count`. Leaves not listed by KVM are not invented, except the KVM
// signature leaf when KVM left it out.
std::vector<kvm_cpuid_entry2> build_vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported,
                                               unsigned cpu_index, unsigned cpu_count);

// Finds a leaf/subleaf in a CPUID table (nullptr when missing).
const kvm_cpuid_entry2* find_cpuid(const std::vector<kvm_cpuid_entry2>& table, uint32_t function,
                                   uint32_t index = 0);

}  // namespace vessel::arch::x86
