// The CPUID page of the guest-side entry (thin/guest_entry.h): what install()
// writes is what a restore reads back, and a damaged page gives KVM nothing
// the table may not hold.
#include "thin/guest_entry.h"

#include <gtest/gtest.h>

#include <cstring>

namespace vessel::thin {
namespace {

namespace x86 = arch::x86;

class GuestEntryCpuid : public ::testing::Test {
protected:
    void SetUp() override {
        auto m = memory::GuestMemory::create(16 << 20);
        ASSERT_TRUE(m) << m.error().message;
        mem_ = std::make_unique<memory::GuestMemory>(std::move(*m));
        as_ = std::make_unique<memory::AddressSpace>(*mem_, 0x1000);
        ASSERT_TRUE(as_->init().has_value());
    }
    uint8_t* page() {
        auto gpa = as_->tables().translate(kGuestCpuidVa, false);
        return gpa ? mem_->host(*gpa, memory::kPageSize) : nullptr;
    }
    std::unique_ptr<memory::GuestMemory> mem_;
    std::unique_ptr<memory::AddressSpace> as_;
};

TEST_F(GuestEntryCpuid, RestoreReadsBackWhatInstallWrote) {
    EXPECT_TRUE(GuestEntry::cpuid_answers(*as_).empty());  // no page yet
    const std::vector<x86::CpuidAnswer> answers = {
        {0, x86::kAnySubleaf, 0x10, 1, 2, 3}, {7, 0, 4, 5, 6, 7}, {0x80000002, x86::kAnySubleaf, 8, 9, 10, 11}};
    ASSERT_TRUE(GuestEntry::install(*as_, answers));
    EXPECT_EQ(GuestEntry::cpuid_answers(*as_), answers);
}

TEST_F(GuestEntryCpuid, ADamagedPageYieldsOnlyWellFormedAnswers) {
    const std::vector<x86::CpuidAnswer> answers = {{1, x86::kAnySubleaf, 1, 2, 3, 4},
                                                   {7, 0, 4, 5, 6, 7},
                                                   {0x40000000, x86::kAnySubleaf, 0, 0, 0, 0},
                                                   {7, x86::kAnySubleaf, 0, 0, 0, 0},
                                                   {1, 3, 0, 0, 0, 0}};
    ASSERT_TRUE(GuestEntry::install(*as_, answers));
    // Unknown leaf, indexed leaf without a subleaf, plain leaf with one: gone.
    EXPECT_EQ(GuestEntry::cpuid_answers(*as_), std::vector<x86::CpuidAnswer>(answers.begin(), answers.begin() + 2));
    // A count beyond the page is bounded by the page.
    const uint32_t huge = 0xffffffff;
    std::memcpy(page(), &huge, sizeof huge);
    EXPECT_LE(GuestEntry::cpuid_answers(*as_).size(), kGuestCpuidMax);
}

}  // namespace
}  // namespace vessel::thin
