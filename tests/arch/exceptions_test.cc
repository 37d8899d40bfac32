// The IDT and stubs that report a thin guest's exceptions (checked by their
// bytes against the SDM's gate layout, vol. 3A 6.14.1), and the signal and
// line each exception gives, as Linux's traps.c and fault.c choose them.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstring>
#include <vector>

#include "arch/x86/exceptions.h"
#include "arch/x86/x86.h"

namespace vessel::arch::x86 {
namespace {

TEST(ExceptionIdt, EveryVectorHasAGateIntoItsStub) {
    std::vector<uint8_t> idt(kIdtSize), stubs(kExceptionStubsSize);
    const uint64_t va = 0x1400;
    build_exception_idt(idt.data(), stubs.data(), va);
    for (unsigned v = 0; v < kExceptionVectors; ++v) {
        const uint8_t* g = &idt[v * 16];
        uint16_t lo, sel, mid;
        uint32_t hi;
        std::memcpy(&lo, g, 2);
        std::memcpy(&sel, g + 2, 2);
        std::memcpy(&mid, g + 6, 2);
        std::memcpy(&hi, g + 8, 4);
        EXPECT_EQ(lo | uint64_t(mid) << 16 | uint64_t(hi) << 32, va + v * kExceptionStubSize) << v;
        EXPECT_EQ(sel, selector::kKernelCode) << v;
        EXPECT_EQ(g[4], 0) << v;  // no IST
        // Present 64-bit interrupt gates; only int3 and into may be raised by `int`-style instructions at CPL3.
        EXPECT_EQ(g[5], (v == 3 || v == 4) ? 0xee : 0x8e) << v;
    }
    // #DE: no error code from the CPU, so the stub pushes one.
    const uint8_t de[] = {0x6a, 0x00, 0x6a, 0x00, 0xe6, kExceptionPort, 0x48, 0x83, 0xc4, 0x10, 0x48, 0xcf};
    EXPECT_EQ(0, std::memcmp(&stubs[0], de, sizeof de));
    // #PF: the CPU's error code is already there.
    const uint8_t pf[] = {0x6a, 14, 0xe6, kExceptionPort, 0x48, 0x83, 0xc4, 0x10, 0x48, 0xcf};
    EXPECT_EQ(0, std::memcmp(&stubs[14 * kExceptionStubSize], pf, sizeof pf));
}

TEST(ExceptionIdt, ErrorCodesAreThoseTheCpuPushes) {
    for (unsigned v : {8u, 10u, 11u, 12u, 13u, 14u, 17u, 21u}) EXPECT_TRUE(exception_has_error_code(v)) << v;
    for (unsigned v : {0u, 1u, 3u, 4u, 5u, 6u, 7u, 16u, 18u, 19u}) EXPECT_FALSE(exception_has_error_code(v)) << v;
}

TEST(GuestFaults, SignalsAndLinesAreLinuxs) {
    auto f = describe_exception(14, 0x4 /* user read, not present */, 0);
    EXPECT_EQ(f.signal, SIGSEGV);
    EXPECT_EQ(f.description, "SIGSEGV: page fault: read of unmapped address 0x0");
    f = describe_exception(14, 0x7 /* user write, present */, 0x4a1000);
    EXPECT_EQ(f.description, "SIGSEGV: page fault: write of protected address 0x4a1000");
    f = describe_exception(14, 0x14 /* user fetch, not present */, 0xdead0000);
    EXPECT_EQ(f.description, "SIGSEGV: page fault: instruction fetch of unmapped address 0xdead0000");
    EXPECT_EQ(describe_exception(6, 0, 0).signal, SIGILL);
    EXPECT_EQ(describe_exception(6, 0, 0).description, "SIGILL: invalid opcode");
    EXPECT_EQ(describe_exception(0, 0, 0).signal, SIGFPE);
    EXPECT_EQ(describe_exception(3, 0, 0).signal, SIGTRAP);
    EXPECT_EQ(describe_exception(13, 0, 0).description, "SIGSEGV: general protection fault");
    EXPECT_EQ(describe_exception(13, 0x1a, 0).description, "SIGSEGV: general protection fault (error code 0x1a)");
    EXPECT_EQ(describe_exception(17, 0, 0).signal, SIGBUS);
    EXPECT_EQ(describe_exception(31, 0, 0).signal, SIGSEGV);
}

TEST(GuestFaults, SiginfoCodesAndAddressesAreLinuxs) {
    auto f = describe_exception(14, 0x6 /* user write, not present */, 0x1234, 0x401000);
    EXPECT_EQ(f.code, SEGV_MAPERR);
    EXPECT_EQ(f.addr, 0x1234u);
    EXPECT_EQ(describe_exception(14, 0x7, 0x4a1000).code, SEGV_ACCERR);
    f = describe_exception(0, 0, 0, 0x401000);  // #DE: the instruction
    EXPECT_EQ(f.code, FPE_INTDIV);
    EXPECT_EQ(f.addr, 0x401000u);
    EXPECT_EQ(describe_exception(6, 0, 0, 0x402000).code, ILL_ILLOPN);
    EXPECT_EQ(describe_exception(6, 0, 0, 0x402000).addr, 0x402000u);
    f = describe_exception(13, 0, 0, 0x401000);  // #GP: the kernel's, no address
    EXPECT_EQ(f.code, SI_KERNEL);
    EXPECT_EQ(f.addr, 0u);
    EXPECT_EQ(describe_exception(17, 0, 0).code, BUS_ADRALN);
}

}  // namespace
}  // namespace vessel::arch::x86
