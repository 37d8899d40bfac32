// The CPUID table of a thin guest's vCPU (arch/x86/cpuid.h): the host's
// answers over KVM's table, and the CR4 bits those answers promise.
#include <gtest/gtest.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/host_cpuid.h"
#include "arch/x86/x86.h"

namespace vessel::arch::x86 {
namespace {

kvm_cpuid_entry2 entry(uint32_t function, uint32_t index, bool indexed, uint32_t eax) {
    kvm_cpuid_entry2 e{};
    e.function = function;
    e.index = index;
    e.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
    e.eax = eax;
    return e;
}

TEST(ThinCpuid, HostAnswersReplaceKvmsAndKvmOnlyLeavesStay) {
    const std::vector<kvm_cpuid_entry2> kvm = {
        entry(0, 0, false, 0x10),
        entry(1, 0, false, 0xaaaa),
        entry(7, 0, true, 0x1),
        entry(7, 1, true, 0x71),
        entry(7, 2, true, 0x72),
        entry(0xd, 0, true, 0xd0),
        entry(0x40000000, 0, false, 0x40000001),
    };
    const std::vector<CpuidAnswer> host = {
        {0, kAnySubleaf, 0x16, 1, 2, 3},
        {1, kAnySubleaf, 0xbbbb, 4, 5, 6},
        {7, 0, 0x2, 7, 8, 9},
        {7, 1, 0x171, 0, 0, 0},
        {0x80000000, kAnySubleaf, 0x80000021, 0, 0, 0},
    };
    auto t = with_host_answers(kvm, host);
    // Every host answer is in the table, exactly, with its kind of subleaf.
    for (const CpuidAnswer& a : host) {
        const uint32_t index = a.subleaf == kAnySubleaf ? 0 : a.subleaf;
        const kvm_cpuid_entry2* e = find_cpuid(t, a.leaf, index);
        ASSERT_NE(e, nullptr) << std::hex << a.leaf;
        EXPECT_EQ(e->eax, a.eax) << std::hex << a.leaf;
        EXPECT_EQ(e->ebx, a.ebx);
        EXPECT_EQ(e->ecx, a.ecx);
        EXPECT_EQ(e->edx, a.edx);
        EXPECT_EQ(bool(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX), a.subleaf != kAnySubleaf);
    }
    // No leaf/subleaf twice: KVM would answer with whichever it found first.
    for (size_t i = 0; i < t.size(); ++i)
        for (size_t j = i + 1; j < t.size(); ++j)
            EXPECT_FALSE(t[i].function == t[j].function && t[i].index == t[j].index)
                << std::hex << t[i].function << "." << t[i].index;
    // What the host does not answer keeps KVM's answer: both kinds of site
    // run the real instruction for those.
    ASSERT_NE(find_cpuid(t, 7, 2), nullptr);
    EXPECT_EQ(find_cpuid(t, 7, 2)->eax, 0x72u);
    ASSERT_NE(find_cpuid(t, 0xd, 0), nullptr);
    EXPECT_EQ(find_cpuid(t, 0xd, 0)->eax, 0xd0u);
    ASSERT_NE(find_cpuid(t, 0x40000000), nullptr);
    EXPECT_EQ(find_cpuid(t, 0x40000000)->eax, 0x40000001u);
    EXPECT_EQ(t.size(), 8u);            // 5 host answers, 3 KVM-only entries
    EXPECT_EQ(t.front().function, 0u);  // sorted
}

TEST(ThinCpuid, NeverMoreEntriesThanKvmTakesAndHostAnswersComeFirst) {
    std::vector<kvm_cpuid_entry2> kvm;
    for (uint32_t i = 0; i < 200; ++i) kvm.push_back(entry(0x40000100 + i, 0, false, i));
    std::vector<CpuidAnswer> host;
    for (uint32_t i = 0; i < 100; ++i) host.push_back({0xd, i, i, 0, 0, 0});
    auto t = with_host_answers(kvm, host);
    EXPECT_EQ(t.size(), kMaxKvmCpuidEntries);
    for (const CpuidAnswer& a : host) EXPECT_NE(find_cpuid(t, 0xd, a.subleaf), nullptr) << a.subleaf;
}

TEST(ThinCpuid, Cr4HoldsWhatTheAnswersPromise) {
    std::vector<kvm_cpuid_entry2> t = {entry(1, 0, false, 0), entry(7, 0, true, 0)};
    EXPECT_EQ(cr4_promised_by(t), 0u);
    t[0].ecx = 1u << 27;  // OSXSAVE
    EXPECT_EQ(cr4_promised_by(t), cr4::kOSXSAVE);
    t[1].ecx = 1u << 4;  // OSPKE
    EXPECT_EQ(cr4_promised_by(t), cr4::kOSXSAVE | cr4::kPKE);
    t[0].ecx = 1u << 26;  // XSAVE exists, but the OS has not enabled it
    EXPECT_EQ(cr4_promised_by(t), cr4::kPKE);
}

// A host whose XCR0 holds state KVM cannot give (MPX under a nested KVM:
// host 0x21f, KVM 0x207) must not get it into the vCPU's XCR0, which KVM
// would refuse with EINVAL before the guest ran.
TEST(ThinCpuid, Xcr0HoldsOnlyWhatKvmCanGive) {
    std::vector<kvm_cpuid_entry2> t = {entry(1, 0, false, 0), entry(0xd, 0, true, 0xffffffff)};
    t[0].ecx = 1u << 27;  // OSXSAVE
    t[1].edx = 0xffffffff;
    EXPECT_EQ(thin_xcr0(t, 0x3), 0x3u);
    EXPECT_EQ(thin_xcr0(t, ~0ull), host_xcr0() | 0x3);
    EXPECT_EQ(thin_xcr0(t, 0x7) & ~0x7ull, 0u);
    t[0].ecx = 0;  // no XSAVE for the guest: x87+SSE only
    EXPECT_EQ(thin_xcr0(t, ~0ull), 0x3u);
}

}  // namespace
}  // namespace vessel::arch::x86
