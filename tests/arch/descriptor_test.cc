// Segment descriptors as the SDM encodes them (vol. 3A, 3.4.5): the flat
// descriptors every boot protocol uses, known by their bytes.
#include <gtest/gtest.h>

#include "arch/x86/x86.h"

namespace vessel::arch::x86 {
namespace {

TEST(GdtDescriptor, FlatSegmentsAndATssHaveTheirWellKnownEncodings) {
    EXPECT_EQ(gdt_descriptor(0, 0xfffff, 0xb, true, 0, false, true, true), 0x00cf9b000000ffffull);  // code32
    EXPECT_EQ(gdt_descriptor(0, 0xfffff, 0x3, true, 0, false, true, true), 0x00cf93000000ffffull);  // data
    EXPECT_EQ(gdt_descriptor(0, 0xfffff, 0xb, true, 0, true, false, true), 0x00af9b000000ffffull);  // code64
    EXPECT_EQ(gdt_descriptor(0, 0xfffff, 0xb, true, 3, true, false, true), 0x00affb000000ffffull);  // user code64
    EXPECT_EQ(gdt_descriptor(0x12345678, 0x67, 0xb, false, 0, false, false, false), 0x12008b3456780067ull);  // TSS
}

}  // namespace
}  // namespace vessel::arch::x86
