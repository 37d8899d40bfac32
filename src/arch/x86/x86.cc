#include "arch/x86/x86.h"

#include <sys/auxv.h>

namespace vessel::arch::x86 {

kvm_segment flat_segment(uint16_t sel, uint8_t type, uint8_t dpl, bool code64) {
    kvm_segment s{};
    s.base = 0;
    s.limit = 0xffffffff;
    s.selector = sel;
    s.type = type;
    s.present = 1;
    s.dpl = dpl;
    s.db = code64 ? 0 : 1;
    s.s = 1;
    s.l = code64 ? 1 : 0;
    s.g = 1;
    return s;
}

void build_gdt(uint64_t* gdt, uint64_t tss_base, uint32_t tss_limit) {
    for (unsigned i = 0; i < kGdtEntries; ++i) gdt[i] = 0;
    gdt[selector::kKernelCode >> 3] = gdt_descriptor(0, 0xfffff, 0xb, true, 0, true, false, true);
    gdt[selector::kKernelData >> 3] = gdt_descriptor(0, 0xfffff, 0x3, true, 0, false, true, true);
    gdt[selector::kUserCode32 >> 3] = gdt_descriptor(0, 0xfffff, 0xb, true, 3, false, true, true);
    gdt[selector::kUserData >> 3] = gdt_descriptor(0, 0xfffff, 0x3, true, 3, false, true, true);
    gdt[selector::kUserCode >> 3] = gdt_descriptor(0, 0xfffff, 0xb, true, 3, true, false, true);
    // 64-bit busy TSS: the low half is a system descriptor, the high half the upper base.
    gdt[selector::kTss >> 3] =
        gdt_descriptor(static_cast<uint32_t>(tss_base), tss_limit, 0xb, false, 0, false, false, false);
    gdt[(selector::kTss >> 3) + 1] = tss_base >> 32;
}

void setup_long_mode(kvm_sregs& s, const LongModeLayout& l) {
    uint8_t dpl = l.user_mode ? 3 : 0;
    uint16_t code = l.user_mode ? selector::kUserCode : selector::kKernelCode;
    uint16_t data = l.user_mode ? selector::kUserData : selector::kKernelData;
    s.cs = flat_segment(code, 0xb, dpl, true);
    s.ds = s.es = s.ss = flat_segment(data, 0x3, dpl, false);
    // FS/GS bases come from the MSRs in 64-bit mode; Linux leaves the selectors null.
    s.fs = s.gs = flat_segment(l.user_mode ? 0 : data, 0x3, dpl, false);

    s.tr = {};
    s.tr.base = l.tss_base;
    s.tr.limit = l.tss_limit;
    s.tr.selector = selector::kTss;
    s.tr.type = 0xb;
    s.tr.present = 1;
    s.ldt = {};
    s.ldt.selector = 0;
    s.ldt.type = 0x2;
    s.ldt.present = 1;
    s.ldt.limit = 0xffff;

    s.gdt.base = l.gdt_base;
    s.gdt.limit = kGdtEntries * 8 - 1;
    s.idt.base = l.idt_base;
    s.idt.limit = l.idt_limit;

    s.cr0 = cr0::kPE | cr0::kMP | cr0::kET | cr0::kNE | cr0::kWP | cr0::kAM | cr0::kPG;
    s.cr3 = l.cr3;
    s.cr4 = cr4::kPAE | cr4::kOSFXSR | cr4::kOSXMMEXCPT | cr4::kOSXSAVE;
    s.efer = efer::kLME | efer::kLMA | efer::kNXE;
}

uint64_t supported_xcr0(const std::vector<kvm_cpuid_entry2>& cpuid) {
    for (const auto& e : cpuid)
        if (e.function == 0xd && e.index == 0) return (uint64_t(e.edx) << 32) | e.eax;
    return 0x3;  // x87 + SSE
}

bool has_fsgsbase(const std::vector<kvm_cpuid_entry2>& cpuid) {
    for (const auto& e : cpuid)
        if (e.function == 7 && e.index == 0) return e.ebx & 1;
    return false;
}

bool host_allows_fsgsbase() { return ::getauxval(AT_HWCAP2) & kHwcap2Fsgsbase; }

uint32_t hwcap(const std::vector<kvm_cpuid_entry2>& cpuid) {
    for (const auto& e : cpuid)
        if (e.function == 1) return e.edx;
    return 0;
}

}  // namespace vessel::arch::x86
