// virtio-vsock with its Unix-socket back-end: guest- and host-initiated
// connections, data both ways, credit, shutdown and reset.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <map>

#include "devices/virtio/vsock.h"
#include "virtio_harness.h"

namespace vessel::testing {
namespace {

using namespace devices::virtio;

constexpr uint64_t kCid = 42;

Fd unix_listen(const std::string& path) {
    ::unlink(path.c_str());
    Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0 || ::listen(s.get(), 4) < 0) return Fd();
    return s;
}

Fd unix_connect(const std::string& path) {
    Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return Fd();
    return s;
}

class VsockTest : public ::testing::Test {
protected:
    void SetUp() override {
        path_ = "/tmp/vessel-vsock-test-" + std::to_string(::getpid()) + ".sock";
        auto v = Vsock::create({kCid, path_});
        ASSERT_TRUE(v) << v.error().message;
        vsock_ = v->get();
        ASSERT_TRUE(g.attach(std::move(*v)));
        ASSERT_TRUE(g.start(32));
        for (int i = 0; i < 8; ++i) post_rx();
    }
    void TearDown() override { ::unlink((path_ + "_1234").c_str()); }

    void post_rx() {
        uint64_t b = g.alloc(sizeof(VsockHeader) + 4096);
        rx_bufs_[g.add_chain(0, {{b, uint32_t(sizeof(VsockHeader) + 4096), true}})] = b;
    }
    // Sends one packet from the guest.
    void send(uint16_t op, uint32_t src_port, uint32_t dst_port, std::string_view data = {}, uint32_t flags = 0,
              uint32_t buf_alloc = 65536, uint32_t fwd_cnt = 0) {
        VsockHeader h{};
        h.src_cid = kCid;
        h.dst_cid = kVsockHostCid;
        h.src_port = src_port;
        h.dst_port = dst_port;
        h.len = uint32_t(data.size());
        h.type = kVsockTypeStream;
        h.op = op;
        h.flags = flags;
        h.buf_alloc = buf_alloc;
        h.fwd_cnt = fwd_cnt;
        uint64_t p = g.alloc(sizeof h + data.size() + 1);
        std::memcpy(g.host(p, sizeof h), &h, sizeof h);
        std::vector<Seg> segs{{p, uint32_t(sizeof h), false}};
        if (!data.empty()) {
            std::memcpy(g.host(p + sizeof h, data.size()), data.data(), data.size());
            segs.push_back({p + sizeof h, uint32_t(data.size()), false});
        }
        g.add_chain(1, segs);
        g.notify(1);
    }
    // The next packet the device delivered to the guest.
    std::optional<std::pair<VsockHeader, std::string>> receive() {
        g.run();
        auto u = g.next_used(0);
        if (!u) return std::nullopt;
        uint64_t b = rx_bufs_.at(u->first);
        VsockHeader h;
        std::memcpy(&h, g.host(b, sizeof h), sizeof h);
        std::string data(reinterpret_cast<char*>(g.host(b + sizeof h, h.len)), h.len);
        EXPECT_EQ(u->second, sizeof h + h.len);
        rx_bufs_[g.add_chain(0, {{b, uint32_t(sizeof(VsockHeader) + 4096), true}})] = b;  // recycle
        g.notify(0);
        return std::make_pair(h, data);
    }
    std::string read_some(int fd) {
        char buf[256];
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        return n > 0 ? std::string(buf, size_t(n)) : std::string();
    }

    VirtioGuest g;
    Vsock* vsock_ = nullptr;
    std::string path_;
    std::map<uint32_t, uint64_t> rx_bufs_;  // descriptor head -> buffer
};

TEST_F(VsockTest, ConfigHoldsTheGuestCid) {
    EXPECT_EQ(g.r32(mmio::kDeviceId), kIdVsock);
    EXPECT_EQ(g.r32(mmio::kConfig), kCid);
    EXPECT_EQ(g.r32(mmio::kConfig + 4), 0u);
}

TEST_F(VsockTest, GuestConnectsToAHostListener) {
    Fd listener = unix_listen(path_ + "_1234");
    ASSERT_TRUE(listener);
    send(kVsockOpRequest, 5000, 1234);
    auto resp = receive();
    ASSERT_TRUE(resp);
    EXPECT_EQ(resp->first.op, kVsockOpResponse);
    EXPECT_EQ(resp->first.src_cid, kVsockHostCid);
    EXPECT_EQ(resp->first.dst_cid, kCid);
    EXPECT_EQ(resp->first.src_port, 1234u);
    EXPECT_EQ(resp->first.dst_port, 5000u);
    EXPECT_EQ(resp->first.buf_alloc, Vsock::kBufAlloc);
    Fd host(::accept(listener.get(), nullptr, nullptr));
    ASSERT_TRUE(host);

    send(kVsockOpRw, 5000, 1234, "hello host");
    EXPECT_EQ(read_some(host.get()), "hello host");

    ASSERT_EQ(::send(host.get(), "hi guest", 8, 0), 8);
    auto rw = receive();
    ASSERT_TRUE(rw);
    EXPECT_EQ(rw->first.op, kVsockOpRw);
    EXPECT_EQ(rw->second, "hi guest");
    EXPECT_EQ(rw->first.fwd_cnt, 10u);  // the 10 bytes we wrote to the host

    // The host closes: the guest is told, answers RST, and the connection goes.
    host.reset();
    auto shut = receive();
    ASSERT_TRUE(shut);
    EXPECT_EQ(shut->first.op, kVsockOpShutdown);
    EXPECT_EQ(shut->first.flags, kVsockShutdownRcv | kVsockShutdownSend);
    EXPECT_EQ(vsock_->connection_count(), 1u);
    send(kVsockOpRst, 5000, 1234);
    EXPECT_EQ(vsock_->connection_count(), 0u);
    EXPECT_FALSE(g.failed());
}

TEST_F(VsockTest, GuestConnectToNobodyIsReset) {
    send(kVsockOpRequest, 5001, 999);
    auto r = receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->first.op, kVsockOpRst);
    EXPECT_EQ(vsock_->connection_count(), 0u);
}

TEST_F(VsockTest, HostConnectsToAGuestPort) {
    Fd host = unix_connect(path_);
    ASSERT_TRUE(host);
    std::string line = "CONNECT 52\nearly";  // data right after the line is kept
    ASSERT_EQ(::send(host.get(), line.data(), line.size(), 0), ssize_t(line.size()));
    auto req = receive();
    ASSERT_TRUE(req);
    EXPECT_EQ(req->first.op, kVsockOpRequest);
    EXPECT_EQ(req->first.dst_port, 52u);
    uint32_t host_port = req->first.src_port;
    EXPECT_GE(host_port, 1u << 30);

    send(kVsockOpResponse, 52, host_port);
    EXPECT_EQ(read_some(host.get()), "OK " + std::to_string(host_port) + "\n");
    auto early = receive();
    ASSERT_TRUE(early);
    EXPECT_EQ(early->first.op, kVsockOpRw);
    EXPECT_EQ(early->second, "early");

    send(kVsockOpRw, 52, host_port, "from guest");
    EXPECT_EQ(read_some(host.get()), "from guest");

    // Guest closes both directions: the device answers RST and closes the host side.
    send(kVsockOpShutdown, 52, host_port, {}, kVsockShutdownRcv | kVsockShutdownSend);
    auto rst = receive();
    ASSERT_TRUE(rst);
    EXPECT_EQ(rst->first.op, kVsockOpRst);
    EXPECT_EQ(read_some(host.get()), "");  // EOF
    EXPECT_EQ(vsock_->connection_count(), 0u);
}

TEST_F(VsockTest, BadHandshakeClosesTheHostSocket) {
    Fd host = unix_connect(path_);
    ASSERT_TRUE(host);
    ASSERT_EQ(::send(host.get(), "HELLO\n", 6, 0), 6);
    g.run();
    EXPECT_EQ(read_some(host.get()), "");
    EXPECT_FALSE(receive());
}

TEST_F(VsockTest, CreditLimitsWhatTheDeviceSends) {
    Fd listener = unix_listen(path_ + "_1234");
    // The guest has room for only 5 bytes.
    send(kVsockOpRequest, 6000, 1234, {}, 0, /*buf_alloc=*/5);
    ASSERT_EQ(receive()->first.op, kVsockOpResponse);
    Fd host(::accept(listener.get(), nullptr, nullptr));
    ASSERT_EQ(::send(host.get(), "0123456789", 10, 0), 10);
    auto first = receive();
    ASSERT_TRUE(first);
    EXPECT_EQ(first->second, "01234");
    EXPECT_FALSE(receive());  // no credit left
    // The guest consumed 5 bytes: a credit update releases the rest.
    send(kVsockOpCreditUpdate, 6000, 1234, {}, 0, 5, 5);
    auto rest = receive();
    ASSERT_TRUE(rest);
    EXPECT_EQ(rest->second, "56789");
}

TEST_F(VsockTest, CreditRequestGetsAnUpdate) {
    Fd listener = unix_listen(path_ + "_1234");
    send(kVsockOpRequest, 6001, 1234);
    ASSERT_EQ(receive()->first.op, kVsockOpResponse);
    send(kVsockOpCreditRequest, 6001, 1234);
    auto u = receive();
    ASSERT_TRUE(u);
    EXPECT_EQ(u->first.op, kVsockOpCreditUpdate);
}

TEST_F(VsockTest, GuestOverrunningItsCreditIsReset) {
    Fd listener = unix_listen(path_ + "_1234");
    send(kVsockOpRequest, 6002, 1234);
    ASSERT_EQ(receive()->first.op, kVsockOpResponse);
    Fd host(::accept(listener.get(), nullptr, nullptr));
    // A header that claims more payload than the chain holds.
    VsockHeader h{};
    h.src_cid = kCid;
    h.dst_cid = kVsockHostCid;
    h.src_port = 6002;
    h.dst_port = 1234;
    h.len = 1000;
    h.type = kVsockTypeStream;
    h.op = kVsockOpRw;
    uint64_t p = g.alloc(sizeof h);
    std::memcpy(g.host(p, sizeof h), &h, sizeof h);
    g.add_chain(1, {{p, uint32_t(sizeof h), false}});
    g.notify(1);
    auto r = receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->first.op, kVsockOpRst);
    EXPECT_EQ(vsock_->connection_count(), 0u);
    EXPECT_FALSE(g.failed());
}

TEST_F(VsockTest, WrongCidIsRefusedAndShortPacketFailsTheDevice) {
    VsockHeader h{};
    h.src_cid = 7;  // not our guest
    h.dst_cid = kVsockHostCid;
    h.type = kVsockTypeStream;
    h.op = kVsockOpRequest;
    uint64_t p = g.alloc(sizeof h);
    std::memcpy(g.host(p, sizeof h), &h, sizeof h);
    g.add_chain(1, {{p, uint32_t(sizeof h), false}});
    g.notify(1);
    EXPECT_FALSE(receive());  // silently dropped
    EXPECT_EQ(vsock_->connection_count(), 0u);
    g.add_chain(1, {{p, 20, false}});  // shorter than a header
    g.notify(1);
    EXPECT_TRUE(g.failed());
}

TEST(VsockSpec, ParsesCidAndPath) {
    auto c = parse_vsock_spec("3");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->guest_cid, 3u);
    EXPECT_EQ(c->uds_path, "/tmp/vessel-vsock-3.sock");
    c = parse_vsock_spec("77,uds=/run/v.sock");
    ASSERT_TRUE(c);
    EXPECT_EQ(c->uds_path, "/run/v.sock");
    EXPECT_FALSE(parse_vsock_spec("2"));
    EXPECT_FALSE(parse_vsock_spec("abc"));
    EXPECT_FALSE(parse_vsock_spec("5,port=1"));
}

}  // namespace
}  // namespace vessel::testing
