#include "arch/x86/cpuid.h"

#include <gtest/gtest.h>

#include <cstring>

namespace x86 = vessel::arch::x86;

namespace {
kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t index = 0, bool indexed = false) {
    kvm_cpuid_entry2 e{};
    e.function = fn;
    e.index = index;
    e.flags = indexed ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0;
    return e;
}
}  // namespace

TEST(Cpuid, TopologyShift) {
    EXPECT_EQ(x86::topology_shift(1), 0u);
    EXPECT_EQ(x86::topology_shift(2), 1u);
    EXPECT_EQ(x86::topology_shift(3), 2u);
    EXPECT_EQ(x86::topology_shift(8), 3u);
    EXPECT_EQ(x86::topology_shift(9), 4u);
}

TEST(Cpuid, EachVcpuSeesItsApicIdAndTheSameTopology) {
    std::vector<kvm_cpuid_entry2> supported = {
        leaf(0), leaf(1), leaf(0xb, 0, true), leaf(0xb, 1, true), leaf(0x80000008), leaf(0x8000001e)};
    supported[1].ebx = 0xff;  // brand index survives
    supported[1].edx = 1;     // FPU
    for (unsigned cpu = 0; cpu < 3; ++cpu) {
        auto t = x86::build_vcpu_cpuid(supported, cpu, 3);
        const auto* l1 = x86::find_cpuid(t, 1);
        ASSERT_NE(l1, nullptr);
        EXPECT_EQ(l1->ebx >> 24, cpu);
        EXPECT_EQ((l1->ebx >> 16) & 0xff, 3u);
        EXPECT_EQ(l1->ebx & 0xff, 0xffu);
        EXPECT_TRUE(l1->ecx & x86::cpuid_bit::kLeaf1EcxHypervisor);
        EXPECT_TRUE(l1->edx & x86::cpuid_bit::kLeaf1EdxHtt);
        const auto* smt = x86::find_cpuid(t, 0xb, 0);
        const auto* core = x86::find_cpuid(t, 0xb, 1);
        ASSERT_TRUE(smt && core);
        EXPECT_EQ(smt->ebx, 1u);
        EXPECT_EQ((smt->ecx >> 8) & 0xff, 1u);  // level type SMT
        EXPECT_EQ(core->eax, 2u);               // shift: 3 cores need 2 bits
        EXPECT_EQ(core->ebx, 3u);
        EXPECT_EQ((core->ecx >> 8) & 0xff, 2u);  // level type core
        EXPECT_EQ(core->edx, cpu);
        const auto* amd = x86::find_cpuid(t, 0x80000008);
        EXPECT_EQ(amd->ecx & 0xff, 2u);
        EXPECT_EQ(x86::find_cpuid(t, 0x8000001e)->eax, cpu);
    }
}

TEST(Cpuid, AddsKvmSignatureWhenMissing) {
    auto t = x86::build_vcpu_cpuid({leaf(1)}, 0, 1);
    const auto* sig = x86::find_cpuid(t, x86::kKvmCpuidSignature);
    ASSERT_NE(sig, nullptr);
    char name[13] = {};
    std::memcpy(name, &sig->ebx, 4);
    std::memcpy(name + 4, &sig->ecx, 4);
    std::memcpy(name + 8, &sig->edx, 4);
    EXPECT_STREQ(name, "KVMKVMKVM");
    EXPECT_FALSE(x86::find_cpuid(t, 1)->edx & x86::cpuid_bit::kLeaf1EdxHtt);
}
