// Malformed virtqueues: each must put the device into its failed state with
// the process alive, and a device reset must bring it back. Driven through
// virtio-rng (the simplest device) so every check goes through real device code.
#include <gtest/gtest.h>

#include "devices/virtio/rng.h"
#include "virtio_harness.h"

namespace vessel::testing {
namespace {

using namespace devices::virtio;

class VirtqueueTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(g.attach(std::make_unique<Rng>()));
        ASSERT_TRUE(g.start(16));
    }
    // After a failure: reset, bring up again, and serve a good request.
    void expect_failed_then_recovers() {
        EXPECT_TRUE(g.failed());
        EXPECT_TRUE(g.needs_reset());
        EXPECT_EQ(g.used_idx(0), 0);
        // Further notifications are ignored while failed.
        g.notify(0);
        EXPECT_EQ(g.used_idx(0), 0);
        ASSERT_TRUE(g.start(16));
        EXPECT_FALSE(g.needs_reset());
        uint64_t buf = g.alloc(64);
        g.add_chain(0, {{buf, 64, true}});
        g.notify(0);
        auto u = g.next_used(0);
        ASSERT_TRUE(u);
        EXPECT_EQ(u->second, 64u);
    }
    VirtioGuest g;
};

TEST_F(VirtqueueTest, RngFillsWritableBuffers) {
    uint64_t a = g.alloc(100), b = g.alloc(28);
    std::memset(g.host(a, 100), 0, 100);
    uint16_t head = g.add_chain(0, {{a, 100, true}, {b, 28, true}});
    g.notify(0);
    auto u = g.next_used(0);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->first, head);
    EXPECT_EQ(u->second, 128u);
    int zeros = 0;
    for (int i = 0; i < 100; ++i) zeros += g.host(a)[i] == 0;
    EXPECT_LT(zeros, 10);
    EXPECT_GT(g.interrupts, 0);
}

TEST_F(VirtqueueTest, NoInterruptFlagSuppressesTheInterrupt) {
    uint16_t flags = kAvailFNoInterrupt;
    std::memcpy(g.host(g.vqs[0].avail, 2), &flags, 2);
    g.add_chain(0, {{g.alloc(8), 8, true}});
    g.notify(0);
    EXPECT_TRUE(g.next_used(0));
    EXPECT_EQ(g.interrupts, 0);
}

TEST_F(VirtqueueTest, ManyRequestsWrapTheRings) {
    for (int round = 0; round < 5; ++round) {
        for (int i = 0; i < 16; ++i) g.add_chain(0, {{g.alloc(4), 4, true}});
        g.notify(0);
        for (int i = 0; i < 16; ++i) ASSERT_TRUE(g.next_used(0));
    }
    EXPECT_FALSE(g.failed());
}

TEST_F(VirtqueueTest, DescriptorLoopFails) {
    uint64_t buf = g.alloc(8);
    g.write_desc(0, 0, buf, 8, kDescFWrite | kDescFNext, 1);
    g.write_desc(0, 1, buf, 8, kDescFWrite | kDescFNext, 0);
    g.push_avail(0, 0);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, SelfLoopFails) {
    g.write_desc(0, 3, g.alloc(8), 8, kDescFWrite | kDescFNext, 3);
    g.push_avail(0, 3);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, BufferOutsideRamFails) {
    g.write_desc(0, 0, g.mem->size() - 4, 8, kDescFWrite, 0);
    g.push_avail(0, 0);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, HugeLengthFails) {
    g.write_desc(0, 0, 0x20000, 0xffffffff, kDescFWrite, 0);
    g.push_avail(0, 0);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, AddressWrapAroundFails) {
    g.write_desc(0, 0, ~0ull - 10, 64, kDescFWrite, 0);
    g.push_avail(0, 0);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, HeadIndexOutOfRangeFails) {
    g.push_avail(0, 16);  // queue size is 16
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, NextIndexOutOfRangeFails) {
    g.write_desc(0, 0, g.alloc(8), 8, kDescFWrite | kDescFNext, 999);
    g.push_avail(0, 0);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, AvailIndexRunningAheadFails) {
    g.set_avail_idx(0, 17);  // 17 new chains in a 16-entry ring
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, ReadableAfterWritableFails) {
    uint64_t buf = g.alloc(16);
    g.write_desc(0, 0, buf, 8, kDescFWrite | kDescFNext, 1);
    g.write_desc(0, 1, buf + 8, 8, 0, 0);
    g.push_avail(0, 0);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, IndirectTableProblemsFail) {
    struct Case {
        const char* what;
        uint32_t len;
        uint16_t flags;
        bool nested;
    } cases[] = {
        {"length not a multiple of 16", 24, kDescFIndirect, false},
        {"zero length", 0, kDescFIndirect, false},
        {"indirect with NEXT", 32, kDescFIndirect | kDescFNext, false},
        {"nested indirect", 32, kDescFIndirect, true},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.what);
        ASSERT_TRUE(g.start(16));
        uint64_t table = g.alloc(64, 16), buf = g.alloc(8);
        uint64_t e0[2] = {buf, uint64_t(kDescFWrite) << 32 | 8};  // addr, len|flags|next
        if (c.nested) e0[1] = uint64_t(kDescFIndirect) << 32 | 32, e0[0] = table;
        std::memcpy(g.host(table, 16), e0, 16);
        std::memset(g.host(table + 16, 16), 0, 16);
        g.write_desc(0, 0, table, c.len, c.flags, 1);
        g.push_avail(0, 0);
        g.notify(0);
        expect_failed_then_recovers();
        if (HasFatalFailure()) return;
    }
}

TEST_F(VirtqueueTest, IndirectLoopInsideTableFails) {
    uint64_t table = g.alloc(32, 16), buf = g.alloc(8);
    uint64_t e[4] = {buf, uint64_t(1) << 48 | uint64_t(kDescFWrite | kDescFNext) << 32 | 8, buf,
                     uint64_t(0) << 48 | uint64_t(kDescFWrite | kDescFNext) << 32 | 8};
    std::memcpy(g.host(table, 32), e, 32);
    g.write_desc(0, 0, table, 32, kDescFIndirect, 0);
    g.push_avail(0, 0);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, IndirectWithoutNegotiationFails) {
    ASSERT_TRUE(g.start(16, ~kFIndirectDesc));
    uint64_t table = g.alloc(16, 16), buf = g.alloc(8);
    uint64_t e[2] = {buf, uint64_t(kDescFWrite) << 32 | 8};
    std::memcpy(g.host(table, 16), e, 16);
    g.write_desc(0, 0, table, 16, kDescFIndirect, 0);
    g.push_avail(0, 0);
    g.notify(0);
    expect_failed_then_recovers();
}

TEST_F(VirtqueueTest, BadQueueConfigurationFails) {
    ASSERT_TRUE(g.negotiate());
    g.w32(mmio::kQueueSel, 0);
    g.w32(mmio::kQueueNum, 12);  // not a power of two
    g.w32(mmio::kQueueReady, 1);
    EXPECT_EQ(g.r32(mmio::kQueueReady), 0u);
    EXPECT_TRUE(g.failed());
    ASSERT_TRUE(g.negotiate());  // negotiate() resets first
    EXPECT_FALSE(g.failed());
    g.w32(mmio::kQueueNum, 16);
    g.w32(mmio::kQueueDescLow, 0xfffff000);  // far outside 16 MiB of RAM
    g.w32(mmio::kQueueReady, 1);
    EXPECT_TRUE(g.failed());
    ASSERT_TRUE(g.negotiate());
    g.w32(mmio::kQueueNum, 4096);  // above QueueNumMax
    g.w32(mmio::kQueueReady, 1);
    EXPECT_TRUE(g.failed());
}

TEST_F(VirtqueueTest, RegisterFileIgnoresOddAccesses) {
    g.w32(mmio::kQueueSel, 99);  // no such queue
    EXPECT_EQ(g.r32(mmio::kQueueNumMax), 0u);
    g.w32(mmio::kQueueReady, 1);
    g.w32(mmio::kQueueNotify, 12345);
    uint8_t junk[3] = {1, 2, 3};
    g.transport->write(mmio::kStatus, junk);  // 3-byte access
    g.transport->write(0x2000, junk);         // past the config space
    uint8_t out[8];
    g.transport->read(0x0fff, {out, 1});
    g.run();
    EXPECT_FALSE(g.failed());
    EXPECT_EQ(g.r32(mmio::kShmLenLow), 0xffffffffu);
}

}  // namespace
}  // namespace vessel::testing
