// virtio-blk and the virtio-mmio transport, driven from a guest-side harness.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "devices/virtio/blk.h"
#include "virtio_harness.h"

namespace vessel::testing {
namespace {

using namespace devices::virtio;
using devices::RateLimit;

struct Req {
    uint64_t hdr, data, status;
};

class BlkTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/vessel-blk-test-XXXXXX";
        int fd = ::mkstemp(tmpl);
        ASSERT_GE(fd, 0);
        path_ = tmpl;
        std::string pattern(1 << 20, '\0');
        for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = char(i * 7 + i / 512);
        ASSERT_EQ(::write(fd, pattern.data(), pattern.size()), ssize_t(pattern.size()));
        ::close(fd);
        contents_ = pattern;
    }
    void TearDown() override { ::unlink(path_.c_str()); }

    void start(bool ro = false, RateLimit limit = {}, devices::Clock clock = devices::monotonic_ns) {
        BlockConfig c{path_, ro, limit};
        auto b = Block::open(c, clock);
        ASSERT_TRUE(b) << b.error().message;
        ASSERT_TRUE(g.attach(std::move(*b)));
        ASSERT_TRUE(g.start(128));
    }

    // Lays out a request; returns where header, data and status live.
    Req submit(uint32_t type, uint64_t sector, uint32_t data_len, bool device_writes_data) {
        Req r{g.alloc(16), data_len ? g.alloc(data_len, 512) : 0, g.alloc(1)};
        uint32_t h[4] = {type, 0, uint32_t(sector), uint32_t(sector >> 32)};
        std::memcpy(g.host(r.hdr, 16), h, 16);
        *g.host(r.status) = 0xee;
        std::vector<Seg> segs{{r.hdr, 16, false}};
        if (data_len) segs.push_back({r.data, data_len, device_writes_data});
        segs.push_back({r.status, 1, true});
        g.add_chain(0, segs);
        return r;
    }

    std::string read_file(uint64_t off, size_t len) {
        std::string s(len, '\0');
        int fd = ::open(path_.c_str(), O_RDONLY);
        EXPECT_EQ(::pread(fd, s.data(), len, off_t(off)), ssize_t(len));
        ::close(fd);
        return s;
    }

    VirtioGuest g;
    std::string path_, contents_;
};

TEST_F(BlkTest, RegistersIdentifyAModernBlockDevice) {
    start();
    EXPECT_EQ(g.r32(mmio::kMagic), mmio::kMagicValue);
    EXPECT_EQ(g.r32(mmio::kVersion), 2u);
    EXPECT_EQ(g.r32(mmio::kDeviceId), kIdBlock);
    EXPECT_EQ(g.r32(mmio::kQueueNumMax), Block::kQueueSize);
    uint64_t f = g.device_features();
    EXPECT_TRUE(f & kFVersion1);
    EXPECT_TRUE(f & kBlkFFlush);
    EXPECT_FALSE(f & kBlkFRo);
    uint64_t capacity = 0;
    for (int i = 0; i < 8; ++i) {
        uint8_t b;
        g.transport->read(mmio::kConfig + i, {&b, 1});
        capacity |= uint64_t(b) << (8 * i);
    }
    EXPECT_EQ(capacity, (1u << 20) / 512);
    // A 64-bit config read of the same field agrees; a misaligned register read is 0.
    uint64_t cap64 = 0;
    g.transport->read(mmio::kConfig, {reinterpret_cast<uint8_t*>(&cap64), 8});
    EXPECT_EQ(cap64, capacity);
    uint16_t half = 0xffff;
    g.transport->read(mmio::kMagic, {reinterpret_cast<uint8_t*>(&half), 2});
    EXPECT_EQ(half, 0);
}

TEST_F(BlkTest, FeaturesOutsideTheOfferAreRefused) {
    auto b = Block::open({path_, false, {}});
    ASSERT_TRUE(b);
    ASSERT_TRUE(g.attach(std::move(*b)));
    g.w32(mmio::kStatus, kStatusAcknowledge | kStatusDriver);
    g.w32(mmio::kDriverFeaturesSel, 1);
    g.w32(mmio::kDriverFeatures, 1 | 0x80000000u);  // VERSION_1 plus an unknown bit
    g.w32(mmio::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    EXPECT_FALSE(g.r32(mmio::kStatus) & kStatusFeaturesOk);
    // A legacy driver (no VERSION_1) is refused too.
    EXPECT_FALSE(g.negotiate(~kFVersion1));
    EXPECT_TRUE(g.negotiate());
}

TEST_F(BlkTest, ReadsWritesFlushesAndGetsId) {
    start();
    Req rd = submit(kBlkTIn, 3, 4096, true);
    g.notify(0);
    auto u = g.next_used(0);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->second, 4096u + 1);
    EXPECT_EQ(*g.host(rd.status), kBlkSOk);
    EXPECT_EQ(std::memcmp(g.host(rd.data, 4096), contents_.data() + 3 * 512, 4096), 0);
    EXPECT_GT(g.interrupts, 0);
    EXPECT_EQ(g.r32(mmio::kInterruptStatus) & kIsrUsedBuffer, kIsrUsedBuffer);
    g.w32(mmio::kInterruptAck, kIsrUsedBuffer);
    EXPECT_EQ(g.r32(mmio::kInterruptStatus), 0u);

    Req wr = submit(kBlkTOut, 10, 1024, false);
    std::memset(g.host(wr.data, 1024), 0x5a, 1024);
    Req fl = submit(kBlkTFlush, 0, 0, false);
    Req id = submit(kBlkTGetId, 0, 20, true);
    g.notify(0);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(g.next_used(0));
    EXPECT_EQ(*g.host(wr.status), kBlkSOk);
    EXPECT_EQ(*g.host(fl.status), kBlkSOk);
    EXPECT_EQ(*g.host(id.status), kBlkSOk);
    EXPECT_EQ(read_file(10 * 512, 1024), std::string(1024, '\x5a'));
    EXPECT_NE(*g.host(id.data), 0);  // some id text
    EXPECT_FALSE(g.failed());
}

TEST_F(BlkTest, ScatteredBuffersAndIndirectTable) {
    start();
    // Data split over three descriptors of odd sizes, inside an indirect table.
    uint64_t hdr = g.alloc(16), d1 = g.alloc(100), d2 = g.alloc(312), d3 = g.alloc(1024 - 412), st = g.alloc(1);
    uint32_t h[4] = {kBlkTIn, 0, 1, 0};
    std::memcpy(g.host(hdr, 16), h, 16);
    uint64_t table = g.alloc(16 * 5, 16);
    struct D {
        uint64_t a;
        uint32_t l;
        uint16_t f, n;
    } d[5] = {{hdr, 16, kDescFNext, 1},
              {d1, 100, kDescFNext | kDescFWrite, 2},
              {d2, 312, kDescFNext | kDescFWrite, 3},
              {d3, 1024 - 412, kDescFNext | kDescFWrite, 4},
              {st, 1, kDescFWrite, 0}};
    std::memcpy(g.host(table, sizeof d), d, sizeof d);
    g.write_desc(0, 0, table, sizeof d, kDescFIndirect, 0);
    g.push_avail(0, 0);
    g.notify(0);
    ASSERT_TRUE(g.next_used(0));
    ASSERT_FALSE(g.failed());
    EXPECT_EQ(*g.host(st), kBlkSOk);
    std::string got;
    got.append(reinterpret_cast<char*>(g.host(d1, 100)), 100);
    got.append(reinterpret_cast<char*>(g.host(d2, 312)), 312);
    got.append(reinterpret_cast<char*>(g.host(d3, 612)), 612);
    EXPECT_EQ(got, contents_.substr(512, 1024));
}

TEST_F(BlkTest, ReadOnlyDiskRefusesWrites) {
    start(true);
    EXPECT_TRUE(g.device_features() & kBlkFRo);
    Req wr = submit(kBlkTOut, 0, 512, false);
    std::memset(g.host(wr.data, 512), 0x11, 512);
    Req rd = submit(kBlkTIn, 0, 512, true);
    g.notify(0);
    ASSERT_TRUE(g.next_used(0));
    ASSERT_TRUE(g.next_used(0));
    EXPECT_EQ(*g.host(wr.status), kBlkSIoErr);
    EXPECT_EQ(*g.host(rd.status), kBlkSOk);
    EXPECT_EQ(read_file(0, 512), contents_.substr(0, 512));
}

TEST_F(BlkTest, OutOfRangeAndUnsupportedRequestsFailOnlyTheRequest) {
    start();
    uint64_t sectors = (1 << 20) / 512;
    Req past = submit(kBlkTIn, sectors, 512, true);             // first sector beyond the end
    Req straddle = submit(kBlkTOut, sectors - 1, 1024, false);  // crosses the end
    Req huge = submit(kBlkTIn, ~0ull - 1, 512, true);           // sector arithmetic would overflow
    Req odd = submit(kBlkTIn, 0, 100, true);                    // not a multiple of 512
    Req discard = submit(11, 0, 16, false);                     // DISCARD: not offered
    Req last = submit(kBlkTIn, sectors - 1, 512, true);         // the last sector is fine
    g.notify(0);
    for (int i = 0; i < 6; ++i) ASSERT_TRUE(g.next_used(0));
    EXPECT_EQ(*g.host(past.status), kBlkSIoErr);
    EXPECT_EQ(*g.host(straddle.status), kBlkSIoErr);
    EXPECT_EQ(*g.host(huge.status), kBlkSIoErr);
    EXPECT_EQ(*g.host(odd.status), kBlkSIoErr);
    EXPECT_EQ(*g.host(discard.status), kBlkSUnsupp);
    EXPECT_EQ(*g.host(last.status), kBlkSOk);
    EXPECT_FALSE(g.failed());
}

TEST_F(BlkTest, RequestWithoutStatusByteFailsTheDevice) {
    start();
    uint64_t hdr = g.alloc(16);
    g.add_chain(0, {{hdr, 16, false}});
    g.notify(0);
    EXPECT_TRUE(g.failed());
    EXPECT_TRUE(g.needs_reset());
    EXPECT_TRUE(g.r32(mmio::kInterruptStatus) & kIsrConfigChange);
}

TEST_F(BlkTest, RateLimiterDefersRequestsUntilTokensRefill) {
    uint64_t now = 1'000'000'000;
    RateLimit limit;
    limit.ops_per_sec = 2;
    limit.ops_burst = 2;
    start(false, limit, [&] { return now; });
    Req a = submit(kBlkTIn, 0, 512, true);
    Req b = submit(kBlkTIn, 1, 512, true);
    Req c = submit(kBlkTIn, 2, 512, true);
    g.notify(0);
    EXPECT_TRUE(g.next_used(0));
    EXPECT_TRUE(g.next_used(0));
    EXPECT_FALSE(g.next_used(0));  // the third waits for a token
    EXPECT_EQ(*g.host(c.status), 0xee);
    now += 500'000'000;  // half a second: one token at 2 ops/s
    g.notify(0);
    EXPECT_TRUE(g.next_used(0));
    EXPECT_EQ(*g.host(a.status) | *g.host(b.status) | *g.host(c.status), kBlkSOk);
}

TEST_F(BlkTest, IoThreadCompletesRequestsAndRaisesInterrupts) {
    start();
    ASSERT_TRUE(g.loop->start());
    Req rd = submit(kBlkTIn, 7, 512, true);
    g.w32(mmio::kQueueNotify, 0);
    for (int i = 0; i < 2000 && g.used_idx(0) == 0; ++i) ::usleep(1000);
    g.loop->stop();
    ASSERT_EQ(g.used_idx(0), 1);
    EXPECT_EQ(*g.host(rd.status), kBlkSOk);
    EXPECT_EQ(std::memcmp(g.host(rd.data, 512), contents_.data() + 7 * 512, 512), 0);
}

TEST(MmioCmdline, FormatsTheKernelParameter) {
    EXPECT_EQ(mmio_cmdline_fragment(0xd0000000, 0x1000, 5), "virtio_mmio.device=4K@0xd0000000:5");
    EXPECT_EQ(mmio_cmdline_fragment(0x1000, 0x200, 12), "virtio_mmio.device=512@0x1000:12");
}

TEST(DiskSpec, ParsesPathFlagsAndLimits) {
    auto c = parse_disk_spec("/var/disk.img,ro,bw=10M,iops=500,iops_burst=50");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->path, "/var/disk.img");
    EXPECT_TRUE(c->read_only);
    EXPECT_EQ(c->limit.bytes_per_sec, 10u << 20);
    EXPECT_EQ(c->limit.ops_per_sec, 500u);
    EXPECT_EQ(c->limit.ops_burst, 50u);
    EXPECT_FALSE(parse_disk_spec(""));
    EXPECT_FALSE(parse_disk_spec("x,rw"));
    EXPECT_FALSE(parse_disk_spec("x,iops=abc"));
}

}  // namespace
}  // namespace vessel::testing
