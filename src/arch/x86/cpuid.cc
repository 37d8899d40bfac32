#include "arch/x86/cpuid.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>
#include <tuple>

#include "arch/x86/x86.h"

namespace vessel::arch::x86 {

unsigned topology_shift(unsigned count) {
    unsigned shift = 0;
    while ((1u << shift) < count) ++shift;
    return shift;
}

const kvm_cpuid_entry2* find_cpuid(const std::vector<kvm_cpuid_entry2>& table, uint32_t function, uint32_t index) {
    for (const auto& e : table)
        if (e.function == function && (!(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e.index == index)) return &e;
    return nullptr;
}

std::vector<kvm_cpuid_entry2> build_vcpu_cpuid(const std::vector<kvm_cpuid_entry2>& supported, unsigned cpu_index,
                                               unsigned cpu_count) {
    std::vector<kvm_cpuid_entry2> out = supported;
    const uint32_t apic_id = cpu_index;
    const unsigned shift = topology_shift(cpu_count);

    bool has_kvm_signature = false;
    for (auto& e : out) {
        switch (e.function) {
            case 0x1:
                // EBX: [31:24] initial APIC ID, [23:16] logical processors per
                // package, [15:8] CLFLUSH line size in quadwords.
                e.ebx = (apic_id << 24) | ((cpu_count & 0xff) << 16) | (8u << 8) | (e.ebx & 0xff);
                e.ecx |= cpuid_bit::kLeaf1EcxHypervisor;
                if (cpu_count > 1)
                    e.edx |= cpuid_bit::kLeaf1EdxHtt;
                else
                    e.edx &= ~cpuid_bit::kLeaf1EdxHtt;
                break;
            case 0x4:
                // Deterministic cache parameters: [31:26] cores per package - 1,
                // [25:14] logical processors sharing this cache - 1 (cores do not
                // share L1/L2; the last level is shared by the package).
                if ((e.eax & 0x1f) != 0) {
                    unsigned level = (e.eax >> 5) & 7;
                    uint32_t sharing = level >= 3 ? cpu_count - 1 : 0;
                    e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((cpu_count - 1) & 0x3f) << 26);
                }
                break;
            case 0x6:
                // No thermal or power management MSRs are emulated.
                e.eax = e.ebx = e.ecx = e.edx = 0;
                break;
            case 0xb:
            case 0x1f:
                // Extended topology: level 0 is SMT (one thread per core), level 1 the cores.
                if (e.index == 0) {
                    e.eax = 0;
                    e.ebx = 1;
                    e.ecx = (1u << 8) | 0;
                } else if (e.index == 1) {
                    e.eax = shift;
                    e.ebx = cpu_count;
                    e.ecx = (2u << 8) | 1;
                } else {
                    e.eax = e.ebx = 0;
                    e.ecx = e.index;
                }
                e.edx = apic_id;
                break;
            case kKvmCpuidSignature: has_kvm_signature = true; break;
            case 0x80000001:
                if (cpu_count > 1) e.ecx |= cpuid_bit::kExt1EcxCmpLegacy;
                break;
            case 0x80000008:
                // AMD: ECX[7:0] cores - 1, [15:12] APIC ID bits for the cores.
                e.ecx = (e.ecx & ~0xf0ffu) | (shift << 12) | ((cpu_count - 1) & 0xff);
                break;
            case 0x8000001e:
                // AMD: extended APIC ID, compute unit (one core each), node 0.
                e.eax = apic_id;
                e.ebx = cpu_index & 0xff;
                e.ecx = 0;
                break;
            default: break;
        }
    }
    if (!has_kvm_signature) {
        kvm_cpuid_entry2 sig{};
        sig.function = kKvmCpuidSignature;
        sig.eax = kKvmCpuidFeatures;
        std::memcpy(&sig.ebx, "KVMK", 4);
        std::memcpy(&sig.ecx, "VMKV", 4);
        std::memcpy(&sig.edx, "M\0\0\0", 4);
        out.push_back(sig);
    }
    return out;
}

std::vector<kvm_cpuid_entry2> with_host_answers(const std::vector<kvm_cpuid_entry2>& supported,
                                                std::span<const CpuidAnswer> host) {
    auto answered = [&](const kvm_cpuid_entry2& e) {
        return std::any_of(host.begin(), host.end(), [&](const CpuidAnswer& a) {
            if (a.leaf != e.function) return false;
            // A leaf the host answers for any subleaf covers all of KVM's
            // entries for it; an indexed one covers only its own subleaves
            // (KVM's others stay, and both sites run the real instruction).
            return a.subleaf == kAnySubleaf || !(e.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || a.subleaf == e.index;
        });
    };
    std::vector<kvm_cpuid_entry2> out;
    for (const CpuidAnswer& a : host) {
        kvm_cpuid_entry2 e{};
        e.function = a.leaf;
        if (a.subleaf != kAnySubleaf) {
            e.index = a.subleaf;
            e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
        }
        e.eax = a.eax;
        e.ebx = a.ebx;
        e.ecx = a.ecx;
        e.edx = a.edx;
        out.push_back(e);
    }
    for (const auto& e : supported)
        if (out.size() < kMaxKvmCpuidEntries && !answered(e)) out.push_back(e);
    out.resize(std::min(out.size(), kMaxKvmCpuidEntries));
    std::sort(out.begin(), out.end(), [](const kvm_cpuid_entry2& a, const kvm_cpuid_entry2& b) {
        return std::tie(a.function, a.index) < std::tie(b.function, b.index);
    });
    return out;
}

std::vector<CpuidAnswer> answers_as_held(std::span<const CpuidAnswer> answers,
                                         const std::vector<kvm_cpuid_entry2>& held) {
    std::vector<CpuidAnswer> out(answers.begin(), answers.end());
    for (CpuidAnswer& a : out) {
        const kvm_cpuid_entry2* e = find_cpuid(held, a.leaf, a.subleaf == kAnySubleaf ? 0 : a.subleaf);
        if (!e) continue;
        a.eax = e->eax;
        a.ebx = e->ebx;
        a.ecx = e->ecx;
        a.edx = e->edx;
    }
    return out;
}

uint64_t cr4_promised_by(const std::vector<kvm_cpuid_entry2>& table) {
    uint64_t bits = 0;
    if (const auto* l1 = find_cpuid(table, 1); l1 && (l1->ecx & (1u << 27))) bits |= cr4::kOSXSAVE;
    if (const auto* l7 = find_cpuid(table, 7, 0); l7 && (l7->ecx & (1u << 4))) bits |= cr4::kPKE;
    return bits;
}

uint64_t thin_xcr0(const std::vector<kvm_cpuid_entry2>& table, uint64_t kvm_supported) {
    const bool xsave = cr4_promised_by(table) & cr4::kOSXSAVE;  // else xgetbv raises #UD
    return (xsave ? host_xcr0() & supported_xcr0(table) & kvm_supported : 0) | 0x3;
}

uint32_t xsave_size(uint64_t xcr0) {
    uint32_t size = 512 + 64;
    for (unsigned i = 2; i < 63; ++i) {
        if (!(xcr0 >> i & 1)) continue;
        unsigned eax, ebx, ecx, edx;
        if (!__get_cpuid_count(0xd, i, &eax, &ebx, &ecx, &edx)) continue;
        size = std::max(size, ebx + eax);  // offset + size of component i
    }
    return std::min<uint32_t>(size, 4096);
}

}  // namespace vessel::arch::x86
