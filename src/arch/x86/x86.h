// Architectural constants and CPU-state builders for x86-64 guests.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace vessel::arch::x86 {

namespace cr0 {
inline constexpr uint64_t kPE = 1ull << 0, kMP = 1ull << 1, kET = 1ull << 4, kNE = 1ull << 5, kWP = 1ull << 16,
                          kAM = 1ull << 18, kPG = 1ull << 31;
}
namespace cr4 {
inline constexpr uint64_t kPAE = 1ull << 5, kOSFXSR = 1ull << 9, kOSXMMEXCPT = 1ull << 10, kFSGSBASE = 1ull << 16,
                          kOSXSAVE = 1ull << 18, kPKE = 1ull << 22;
}
namespace efer {
inline constexpr uint64_t kSCE = 1ull << 0, kLME = 1ull << 8, kLMA = 1ull << 10, kNXE = 1ull << 11;
}
namespace rflags {
inline constexpr uint64_t kReserved1 = 1ull << 1, kIF = 1ull << 9, kIOPL3 = 3ull << 12;
}
namespace msr {
inline constexpr uint32_t kEfer = 0xc0000080, kStar = 0xc0000081, kLstar = 0xc0000082, kCstar = 0xc0000083,
                          kSfmask = 0xc0000084, kFsBase = 0xc0000100, kGsBase = 0xc0000101, kKernelGsBase = 0xc0000102,
                          kTscAux = 0xc0000103, kSysenterCs = 0x174, kSysenterEsp = 0x175, kSysenterEip = 0x176,
                          kTsc = 0x10, kMiscEnable = 0x1a0, kPat = 0x277, kApicBase = 0x1b;
}

// Linux's GDT layout, so selectors the guest may read look familiar.
namespace selector {
inline constexpr uint16_t kKernelCode = 0x10, kKernelData = 0x18, kUserCode32 = 0x23, kUserData = 0x2b,
                          kUserCode = 0x33, kTss = 0x40;
}
inline constexpr unsigned kGdtEntries = 10;  // TSS descriptor takes two slots

// A present segment descriptor: base/limit split fields, `type` (4 bits),
// S (code/data rather than system), DPL, L (64-bit code), D/B, G.
constexpr uint64_t gdt_descriptor(uint32_t base, uint32_t limit, unsigned type, bool s, unsigned dpl, bool l, bool db,
                                  bool g) {
    return (uint64_t(limit) & 0xffff) | (uint64_t(base & 0xffffff) << 16) | (uint64_t(type) << 40) |
           (uint64_t(s) << 44) | (uint64_t(dpl) << 45) | (1ull << 47) | ((uint64_t(limit) >> 16 & 0xf) << 48) |
           (uint64_t(l) << 53) | (uint64_t(db) << 54) | (uint64_t(g) << 55) | (uint64_t(base >> 24) << 56);
}

// A flat 4 GiB segment (base 0, page granular, present): `type` is the
// descriptor type (0xb code, 0x3 data); 64-bit code when `code64`, else 32-bit.
kvm_segment flat_segment(uint16_t selector, uint8_t type, uint8_t dpl, bool code64);

// Writes a flat 64-bit GDT (kernel/user code and data, a TSS descriptor) into
// `gdt` (at least kGdtEntries entries).
void build_gdt(uint64_t* gdt, uint64_t tss_base, uint32_t tss_limit);

// Segment registers and control registers for a 64-bit guest with paging
// rooted at `cr3`, its GDT and TSS at the given linear addresses.
struct LongModeLayout {
    uint64_t cr3;
    uint64_t gdt_base;
    uint64_t tss_base;
    uint32_t tss_limit = 0x67;
    uint64_t idt_base = 0;
    uint16_t idt_limit = 0;
    bool user_mode;  // CPL3 (thin guests) or CPL0 (kernels)
};
void setup_long_mode(kvm_sregs& sregs, const LongModeLayout& layout);

// The XCR0 value KVM lets the guest use (leaf 0xD subleaf 0 of `cpuid`).
uint64_t supported_xcr0(const std::vector<kvm_cpuid_entry2>& cpuid);

// CPUID leaf 1 EDX, as Linux passes it in AT_HWCAP.
// CPUID.(7,0):EBX[0]: RDFSBASE/WRFSBASE and friends exist (CR4.FSGSBASE).
bool has_fsgsbase(const std::vector<kvm_cpuid_entry2>& cpuid);
// Linux's HWCAP2_FSGSBASE (AT_HWCAP2): user mode may use RDFSBASE/WRFSBASE.
inline constexpr uint64_t kHwcap2Fsgsbase = 1 << 1;
// Does the host let its own user mode use RDFSBASE/WRFSBASE (its AT_HWCAP2)?
// A guest at CPL3 under PVM runs under the host's CR4, so this, not CPUID,
// says whether the instructions work there.
bool host_allows_fsgsbase();
uint32_t hwcap(const std::vector<kvm_cpuid_entry2>& cpuid);

}  // namespace vessel::arch::x86
