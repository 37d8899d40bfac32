// virtio-vsock (section 5.10) with a user-space back-end on Unix sockets, in
// Firecracker's model (no /dev/vhost-vsock needed):
//
// - guest -> host: a guest connection to CID 2, port P becomes a connection to
//   the host Unix socket "<uds_path>_P" (someone on the host listens there).
// - host -> guest: a host program connects to <uds_path>, writes
//   "CONNECT P\n", and once the guest accepts on port P reads "OK <port>\n",
//   where <port> is the host-side port the guest sees; then the stream is the
//   connection's data.
//
// Stream sockets only (VIRTIO_VSOCK_TYPE_STREAM). Credit-based flow control in
// both directions: the device never sends the guest more than the guest's
// buf_alloc allows, and it advertises kBufAlloc bytes of buffering per
// connection, which bounds what it holds for a slow host reader.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "devices/virtio/device.h"

namespace vessel::devices::virtio {

inline constexpr uint64_t kVsockHostCid = 2;
inline constexpr uint16_t kVsockTypeStream = 1;
enum VsockOp : uint16_t {
    kVsockOpInvalid = 0,
    kVsockOpRequest = 1,
    kVsockOpResponse = 2,
    kVsockOpRst = 3,
    kVsockOpShutdown = 4,
    kVsockOpRw = 5,
    kVsockOpCreditUpdate = 6,
    kVsockOpCreditRequest = 7,
};
inline constexpr uint32_t kVsockEventTransportReset = 0;  // virtio_vsock_event.id
inline constexpr uint32_t kVsockShutdownRcv = 1;
inline constexpr uint32_t kVsockShutdownSend = 2;

struct __attribute__((packed)) VsockHeader {
    uint64_t src_cid;
    uint64_t dst_cid;
    uint32_t src_port;
    uint32_t dst_port;
    uint32_t len;
    uint16_t type;
    uint16_t op;
    uint32_t flags;
    uint32_t buf_alloc;
    uint32_t fwd_cnt;
};
static_assert(sizeof(VsockHeader) == 44);

struct VsockConfig {
    uint64_t guest_cid = 0;
    std::string uds_path;
};

// Parses the --vsock value "CID[,uds=PATH]"; PATH defaults to
// /tmp/vessel-vsock-CID.sock.
Result<VsockConfig> parse_vsock_spec(std::string_view spec);

class Vsock final : public VirtioDevice {
public:
    static constexpr uint16_t kQueueSize = 128;
    static constexpr uint32_t kBufAlloc = 256 * 1024;   // per-connection buffer we advertise
    static constexpr uint32_t kMaxPayload = 64 * 1024;  // per packet, either way
    static constexpr size_t kMaxConnections = 1024;

    // Binds and listens on config.uds_path (replacing a stale socket file).
    static Result<std::unique_ptr<Vsock>> create(const VsockConfig& config);
    ~Vsock() override;

    uint32_t device_id() const override { return kIdVsock; }
    uint64_t features() const override { return 0; }
    std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize, kQueueSize}; }
    std::span<const uint8_t> config() const override {
        return {reinterpret_cast<const uint8_t*>(&cid_config_), sizeof cid_config_};
    }
    Result<> activate(Transport& transport) override;
    // The host ends of the guest's connections did not survive the snapshot:
    // the guest is sent a transport-reset event (queue 2), which makes its
    // driver drop every connection and re-read the CID.
    Result<> activate_restored(Transport& transport) override;
    void process_queue(unsigned index) override;
    void reset() override;
    const char* name() const override { return "virtio-vsock"; }

    size_t connection_count() const { return conns_.size(); }

private:
    struct Connection {
        Fd sock;
        uint32_t local_port = 0;  // the host side's port
        uint32_t peer_port = 0;   // the guest's port
        enum State { kHandshake, kConnecting, kEstablished } state = kHandshake;
        bool readable = false, writable = true;  // edge-triggered readiness
        bool host_eof = false;                   // host closed its sending side
        bool peer_no_send = false, peer_no_recv = false;
        // host -> guest credit
        uint32_t peer_buf_alloc = 0, peer_fwd_cnt = 0, rx_cnt = 0;
        // guest -> host
        uint32_t recv_cnt = 0, fwd_cnt = 0, fwd_cnt_sent = 0;
        std::vector<uint8_t> pending;  // received from the guest, not yet written to the host
        bool credit_update_queued = false;
    };
    struct Control {
        uint32_t local_port, peer_port;
        uint16_t op;
        uint32_t flags;
    };
    static uint64_t key(uint32_t local, uint32_t peer) { return uint64_t(local) << 32 | peer; }

    Vsock() = default;
    void process_rx();
    void process_tx();
    void process_events();
    void handle_packet(const VsockHeader& h, const DescriptorChain& chain);
    void on_listener();
    void on_socket(int fd, uint32_t events);
    void handshake(Connection& c);
    void flush(Connection& c);
    void queue_control(uint32_t local, uint32_t peer, uint16_t op, uint32_t flags = 0);
    void close_connection(uint64_t k);
    Connection* find(uint32_t local, uint32_t peer);
    uint32_t peer_credit(const Connection& c) const;
    VsockHeader header_for(uint32_t local, uint32_t peer, uint16_t op, uint32_t flags, uint32_t len);
    Result<> watch_socket(int fd);

    uint64_t cid_config_ = 0;
    std::string uds_path_;
    Fd listener_;
    Transport* transport_ = nullptr;
    std::map<uint64_t, std::unique_ptr<Connection>> conns_;  // by key(local, peer)
    std::map<int, uint64_t> by_fd_;                          // socket -> key
    std::map<int, std::unique_ptr<Connection>> handshakes_;  // host sockets before "CONNECT"
    std::deque<Control> control_;
    uint32_t next_local_port_ = 1u << 30;
    bool reset_event_pending_ = false;  // a transport-reset event waits for an event buffer
};

}  // namespace vessel::devices::virtio
