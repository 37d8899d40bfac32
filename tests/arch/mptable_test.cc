#include "arch/x86/mptable.h"

#include <gtest/gtest.h>

#include <cstring>

namespace x86 = vessel::arch::x86;

namespace {
uint8_t sum(const uint8_t* p, size_t n) {
    uint8_t s = 0;
    for (size_t i = 0; i < n; ++i) s += p[i];
    return s;
}
}  // namespace

TEST(MpTable, FloatingPointerAndHeaderAreValid) {
    const uint64_t addr = 0x9fc00;
    auto t = x86::build_mptable(addr, 4);
    ASSERT_TRUE(t) << t.error().message;
    const uint8_t* p = t->data();
    EXPECT_EQ(std::memcmp(p, "_MP_", 4), 0);
    uint32_t physptr;
    std::memcpy(&physptr, p + 4, 4);
    EXPECT_EQ(physptr, addr + 16);
    EXPECT_EQ(p[8], 1);  // length in paragraphs
    EXPECT_EQ(p[9], 4);  // spec 1.4
    EXPECT_EQ(sum(p, 16), 0);
    EXPECT_EQ(p[11], 0);  // feature byte 1: a configuration table follows

    const uint8_t* h = p + 16;
    EXPECT_EQ(std::memcmp(h, "PCMP", 4), 0);
    uint16_t len, count;
    std::memcpy(&len, h + 4, 2);
    std::memcpy(&count, h + 34, 2);
    EXPECT_EQ(len + 16u, t->size());
    EXPECT_EQ(sum(h, len), 0);
    uint32_t lapic;
    std::memcpy(&lapic, h + 36, 4);
    EXPECT_EQ(lapic, 0xfee00000u);

    // Walk the entries: 4 processors (BSP first), the ISA bus, the I/O APIC,
    // 24 I/O interrupt entries and 2 local ones.
    const uint8_t* e = h + 44;
    unsigned cpus = 0, buses = 0, ioapics = 0, irqs = 0, lints = 0;
    for (unsigned i = 0; i < count; ++i) {
        switch (e[0]) {
            case 0:
                EXPECT_EQ(e[1], cpus);
                EXPECT_EQ(e[3], cpus == 0 ? 3 : 1);
                ++cpus;
                e += 20;
                break;
            case 1:
                EXPECT_EQ(std::memcmp(e + 2, "ISA   ", 6), 0);
                ++buses;
                e += 8;
                break;
            case 2: {
                uint32_t a;
                std::memcpy(&a, e + 4, 4);
                EXPECT_EQ(a, 0xfec00000u);
                EXPECT_EQ(e[1], 4);  // the I/O APIC's ID follows the CPUs'
                ++ioapics;
                e += 8;
                break;
            }
            case 3:
                EXPECT_EQ(e[5], e[7]);
                ++irqs;
                e += 8;
                break;  // ISA IRQ n -> pin n
            case 4:
                ++lints;
                e += 8;
                break;
            default: FAIL() << "unknown entry type " << int(e[0]);
        }
    }
    EXPECT_EQ(e, h + len);
    EXPECT_EQ(cpus, 4u);
    EXPECT_EQ(buses, 1u);
    EXPECT_EQ(ioapics, 1u);
    EXPECT_EQ(irqs, x86::kIoApicPins);
    EXPECT_EQ(lints, 2u);
}

TEST(MpTable, RefusesBadInput) {
    EXPECT_FALSE(x86::build_mptable(0x9fc00, 0));
    EXPECT_FALSE(x86::build_mptable(0x9fc00, 255));
    EXPECT_FALSE(x86::build_mptable(0x9fc08, 1));  // not 16-byte aligned
    EXPECT_FALSE(x86::build_mptable(0xfff00, 2));  // crosses 1 MiB
}
