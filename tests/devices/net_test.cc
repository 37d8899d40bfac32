// virtio-net through a frame socket (SOCK_SEQPACKET socketpair: one frame per
// message, like a TAP) and, when this host allows it, a real TAP device.
#include <gtest/gtest.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include "devices/virtio/net.h"
#include "virtio_harness.h"

namespace vessel::testing {
namespace {

using namespace devices::virtio;

class NetTest : public ::testing::Test {
protected:
    void SetUp() override {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
        host_.reset(sv[1]);
        auto n = Net::create(Fd(sv[0]), Net::kFrameSocket, MacAddress{0x52, 0x54, 0, 0x12, 0x34, 0x56});
        ASSERT_TRUE(n) << n.error().message;
        net_ = n->get();
        ASSERT_TRUE(g.attach(std::move(*n)));
        ASSERT_TRUE(g.start(64));
    }
    std::string frame(size_t payload, char fill) {
        std::string f(kNetHdrSize, '\0');
        f += std::string(payload, fill);
        return f;
    }
    VirtioGuest g;
    Fd host_;
    Net* net_ = nullptr;
};

TEST_F(NetTest, ConfigCarriesTheMac) {
    EXPECT_EQ(g.r32(mmio::kDeviceId), kIdNet);
    EXPECT_TRUE(g.device_features() & kNetFMac);
    uint8_t mac[6];
    g.transport->read(mmio::kConfig, mac);
    EXPECT_EQ(mac[0], 0x52);
    EXPECT_EQ(mac[5], 0x56);
}

TEST_F(NetTest, TransmitsFramesToTheBackend) {
    uint64_t hdr = g.alloc(kNetHdrSize), body = g.alloc(60);
    std::memset(g.host(hdr, kNetHdrSize), 0, kNetHdrSize);
    std::memset(g.host(body, 60), 0xab, 60);
    g.add_chain(1, {{hdr, uint32_t(kNetHdrSize), false}, {body, 60, false}});
    g.notify(1);
    ASSERT_TRUE(g.next_used(1));
    char buf[2048];
    ssize_t n = ::recv(host_.get(), buf, sizeof buf, MSG_DONTWAIT);
    ASSERT_EQ(n, ssize_t(kNetHdrSize + 60));
    EXPECT_EQ(uint8_t(buf[kNetHdrSize]), 0xab);
    EXPECT_EQ(net_->counters().tx_frames, 1u);
}

TEST_F(NetTest, RuntFramesAreDroppedNotFatal) {
    uint64_t b = g.alloc(4);
    g.add_chain(1, {{b, 4, false}});
    g.notify(1);
    ASSERT_TRUE(g.next_used(1));
    EXPECT_FALSE(g.failed());
    EXPECT_EQ(net_->counters().tx_dropped, 1u);
}

TEST_F(NetTest, ReceivesFramesIntoPostedBuffers) {
    // Frames arrive before any buffer exists: they wait in the back-end.
    std::string f1 = frame(100, 'x'), f2 = frame(1500, 'y');
    ASSERT_EQ(::send(host_.get(), f1.data(), f1.size(), 0), ssize_t(f1.size()));
    ASSERT_EQ(::send(host_.get(), f2.data(), f2.size(), 0), ssize_t(f2.size()));
    g.run();
    EXPECT_FALSE(g.next_used(0));
    uint64_t b1 = g.alloc(2048), b2 = g.alloc(2048);
    g.add_chain(0, {{b1, 2048, true}});
    g.add_chain(0, {{b2, 1024, true}, {b2 + 1024, 1024, true}});
    g.notify(0);
    auto u1 = g.next_used(0), u2 = g.next_used(0);
    ASSERT_TRUE(u1 && u2);
    EXPECT_EQ(u1->second, f1.size());
    EXPECT_EQ(u2->second, f2.size());
    EXPECT_EQ(*g.host(b1 + kNetHdrSize), 'x');
    EXPECT_EQ(*g.host(b2 + kNetHdrSize + 1499), 'y');
    uint16_t num_buffers;
    std::memcpy(&num_buffers, g.host(b1 + 10, 2), 2);
    EXPECT_EQ(num_buffers, 1);
    // A later frame is delivered as soon as it arrives (buffers are posted).
    uint64_t b3 = g.alloc(2048);
    g.add_chain(0, {{b3, 2048, true}});
    g.notify(0);
    std::string f3 = frame(60, 'z');
    ASSERT_EQ(::send(host_.get(), f3.data(), f3.size(), 0), ssize_t(f3.size()));
    g.run();
    auto u3 = g.next_used(0);
    ASSERT_TRUE(u3);
    EXPECT_EQ(*g.host(b3 + kNetHdrSize), 'z');
    EXPECT_EQ(net_->counters().rx_frames, 3u);
}

TEST_F(NetTest, ReadableRxBufferFailsTheDevice) {
    uint64_t b = g.alloc(2048);
    g.add_chain(0, {{b, 2048, false}});
    std::string f = frame(60, 'q');
    ASSERT_EQ(::send(host_.get(), f.data(), f.size(), 0), ssize_t(f.size()));
    g.notify(0);
    EXPECT_TRUE(g.failed());
}

TEST(NetSpec, ParsesTapMacAndLimits) {
    auto c = parse_net_spec("tap=vtap0,mac=52:54:00:ab:cd:ef,bw=1G,iops=1000");
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->tap, "vtap0");
    ASSERT_TRUE(c->mac);
    EXPECT_EQ((*c->mac)[3], 0xab);
    EXPECT_EQ(c->limit.bytes_per_sec, 1ull << 30);
    EXPECT_FALSE(parse_net_spec("mac=52:54:00:ab:cd:ef"));
    EXPECT_FALSE(parse_net_spec("tap=x,mac=01:00:00:00:00:00"));  // multicast
    EXPECT_FALSE(parse_net_spec("tap=x,mac=52:54:00:ab:cd"));
    EXPECT_FALSE(parse_net_spec("tap=x,speed=fast"));
}

// A real TAP: created by this test (non-persistent, so it disappears when the
// fd closes), activated with offloads, frames written by the guest leave
// through it. Skipped where TAP creation is not allowed.
TEST(NetTap, ActivatesOnARealTapDevice) {
    std::string name = "vsltap" + std::to_string(::getpid() % 100000);
    auto tap = open_tap(name);
    if (!tap) GTEST_SKIP() << tap.error().message;
    EXPECT_NE(::if_nametoindex(name.c_str()), 0u);
    auto n = Net::create(std::move(*tap), Net::kTap, std::nullopt);
    ASSERT_TRUE(n) << n.error().message;
    Net* net = n->get();
    {
        VirtioGuest g;
        ASSERT_TRUE(g.attach(std::move(*n)));
        ASSERT_TRUE(g.start(64));
        EXPECT_FALSE(net->mac()[0] & 1);
        // The interface is down, so the kernel drops what we send; the device
        // must still complete the buffer.
        uint64_t b = g.alloc(kNetHdrSize + 60);
        std::memset(g.host(b, kNetHdrSize + 60), 0, kNetHdrSize + 60);
        g.add_chain(1, {{b, uint32_t(kNetHdrSize + 60), false}});
        g.notify(1);
        EXPECT_TRUE(g.next_used(1));
        EXPECT_FALSE(g.failed());
    }
    EXPECT_EQ(::if_nametoindex(name.c_str()), 0u);  // gone with its fd
}

}  // namespace
}  // namespace vessel::testing
