#include "devices/virtio/vsock.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>

namespace vessel::devices::virtio {

namespace {

Result<sockaddr_un> unix_address(const std::string& path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path)
        return fail("vsock socket path '" + path + "' is empty or longer than " +
                    std::to_string(sizeof addr.sun_path - 1) + " bytes");
    std::memcpy(addr.sun_path, path.data(), path.size());
    return addr;
}

}  // namespace

Result<VsockConfig> parse_vsock_spec(std::string_view spec) {
    VsockConfig c;
    size_t comma = spec.find(',');
    std::string_view cid = spec.substr(0, comma);
    auto [p, ec] = std::from_chars(cid.data(), cid.data() + cid.size(), c.guest_cid);
    // CIDs 0-2 are reserved, 0xffffffff is "any"; Linux CIDs are 32-bit.
    if (ec != std::errc() || p != cid.data() + cid.size() || c.guest_cid < 3 || c.guest_cid >= 0xffffffffull)
        return fail("--vsock: guest CID must be a number in 3..4294967294");
    c.uds_path = "/tmp/vessel-vsock-" + std::to_string(c.guest_cid) + ".sock";
    while (comma != std::string_view::npos) {
        spec.remove_prefix(comma + 1);
        comma = spec.find(',');
        std::string_view opt = spec.substr(0, comma);
        if (!opt.starts_with("uds=")) return fail("--vsock: unknown option '" + std::string(opt) + "'");
        c.uds_path = std::string(opt.substr(4));
    }
    if (auto a = unix_address(c.uds_path); !a) return wrap("--vsock", a.error());
    return c;
}

Result<std::unique_ptr<Vsock>> Vsock::create(const VsockConfig& config) {
    if (config.guest_cid < 3 || config.guest_cid >= 0xffffffffull) return fail("vsock: guest CID out of range");
    auto addr = unix_address(config.uds_path);
    if (!addr) return std::unexpected(addr.error());
    std::unique_ptr<Vsock> v(new Vsock());
    v->cid_config_ = config.guest_cid;
    v->uds_path_ = config.uds_path;
    v->listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!v->listener_) return fail_errno("vsock: socket");
    ::unlink(config.uds_path.c_str());  // a socket file left by an earlier run
    if (::bind(v->listener_.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0)
        return fail_errno("vsock: bind " + config.uds_path);
    if (::listen(v->listener_.get(), 64) < 0) return fail_errno("vsock: listen " + config.uds_path);
    return v;
}

Vsock::~Vsock() {
    if (listener_) ::unlink(uds_path_.c_str());
}

Result<> Vsock::activate(Transport& transport) {
    transport_ = &transport;
    return transport.watch(listener_.get(), EPOLLIN, [this](uint32_t) { on_listener(); });
}

Result<> Vsock::activate_restored(Transport& transport) {
    reset_event_pending_ = true;  // sent when the event queue has a buffer (the transport kicks it)
    return activate(transport);
}

void Vsock::process_events() {
    if (!reset_event_pending_) return;
    Queue& q = transport_->queue(2);
    auto next = q.pop(transport_->memory());
    if (!next) {
        transport_->fail("event queue: " + next.error().message);
        return;
    }
    if (!*next) return;  // no buffer yet: sent when the driver adds one
    const DescriptorChain& chain = **next;
    uint32_t id = kVsockEventTransportReset;
    size_t n = chain.write(transport_->memory(), 0, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&id), 4));
    if (auto r = q.add_used(transport_->memory(), chain, static_cast<uint32_t>(n)); !r) {
        transport_->fail("event queue: " + r.error().message);
        return;
    }
    reset_event_pending_ = false;
    transport_->signal_used(2);
}

void Vsock::reset() {
    reset_event_pending_ = false;
    // Transport reset already stopped watching every fd; closing ends the host sides.
    conns_.clear();
    by_fd_.clear();
    handshakes_.clear();
    control_.clear();
    transport_ = nullptr;
}

Result<> Vsock::watch_socket(int fd) {
    return transport_->watch(fd, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                             [this, fd](uint32_t events) { on_socket(fd, events); });
}

Vsock::Connection* Vsock::find(uint32_t local, uint32_t peer) {
    auto it = conns_.find(key(local, peer));
    return it == conns_.end() ? nullptr : it->second.get();
}

uint32_t Vsock::peer_credit(const Connection& c) const {
    // Unsigned wrap-around is what the spec's counters do.
    uint32_t in_flight = c.rx_cnt - c.peer_fwd_cnt;
    return in_flight >= c.peer_buf_alloc ? 0 : c.peer_buf_alloc - in_flight;
}

VsockHeader Vsock::header_for(uint32_t local, uint32_t peer, uint16_t op, uint32_t flags, uint32_t len) {
    VsockHeader h{};
    h.src_cid = kVsockHostCid;
    h.dst_cid = cid_config_;
    h.src_port = local;
    h.dst_port = peer;
    h.len = len;
    h.type = kVsockTypeStream;
    h.op = op;
    h.flags = flags;
    h.buf_alloc = kBufAlloc;
    if (Connection* c = find(local, peer)) {
        h.fwd_cnt = c->fwd_cnt;
        c->fwd_cnt_sent = c->fwd_cnt;  // every packet carries our credit
    }
    return h;
}

void Vsock::queue_control(uint32_t local, uint32_t peer, uint16_t op, uint32_t flags) {
    // Bounded: a guest that never posts rx buffers cannot make us grow forever.
    if (control_.size() >= 4 * kMaxConnections) return;
    control_.push_back({local, peer, op, flags});
}

void Vsock::close_connection(uint64_t k) {
    auto it = conns_.find(k);
    if (it == conns_.end()) return;
    int fd = it->second->sock.get();
    transport_->unwatch(fd);
    by_fd_.erase(fd);
    conns_.erase(it);
}

void Vsock::process_queue(unsigned index) {
    if (!transport_) return;
    if (index == 1)
        process_tx();
    else if (index == 0)
        process_rx();  // new rx buffers
    else if (index == 2)
        process_events();  // transport-reset events, sent after a restore
}

void Vsock::process_tx() {
    auto& mem = transport_->memory();
    drain_queue(*transport_, 1, "tx: ", [&](const DescriptorChain& chain) {
        VsockHeader h;
        if (chain.read(mem, 0, {reinterpret_cast<uint8_t*>(&h), sizeof h}) != sizeof h) {
            transport_->fail("tx: packet shorter than its 44-byte header");
            return Served::kDone;
        }
        handle_packet(h, chain);
        if (transport_->failed()) return Served::kDone;
        if (auto r = transport_->queue(1).add_used(mem, chain, 0); !r) transport_->fail(r.error().message);
        return Served::kDone;
    });
    process_rx();  // replies, and data the new credit allows
}

void Vsock::handle_packet(const VsockHeader& h, const DescriptorChain& chain) {
    // Packets not from our guest, not to the host, or not a stream are refused.
    bool addressed = h.src_cid == cid_config_ && h.dst_cid == kVsockHostCid;
    if (!addressed || h.type != kVsockTypeStream) {
        if (addressed && h.op != kVsockOpRst) queue_control(h.dst_port, h.src_port, kVsockOpRst);
        return;
    }
    uint32_t local = h.dst_port, peer = h.src_port;
    Connection* c = find(local, peer);
    if (c) {
        c->peer_buf_alloc = h.buf_alloc;
        c->peer_fwd_cnt = h.fwd_cnt;
    }
    switch (h.op) {
        case kVsockOpRequest: {
            if (c || conns_.size() >= kMaxConnections) {
                queue_control(local, peer, kVsockOpRst);
                return;
            }
            auto addr = unix_address(uds_path_ + "_" + std::to_string(local));
            Fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
            if (!addr || !s || ::connect(s.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) < 0) {
                queue_control(local, peer, kVsockOpRst);  // nobody listens on that port
                return;
            }
            auto conn = std::make_unique<Connection>();
            conn->sock = std::move(s);
            conn->local_port = local;
            conn->peer_port = peer;
            conn->state = Connection::kEstablished;
            conn->peer_buf_alloc = h.buf_alloc;
            conn->peer_fwd_cnt = h.fwd_cnt;
            int fd = conn->sock.get();
            if (!watch_socket(fd)) {
                queue_control(local, peer, kVsockOpRst);
                return;
            }
            by_fd_[fd] = key(local, peer);
            conns_[key(local, peer)] = std::move(conn);
            queue_control(local, peer, kVsockOpResponse);
            return;
        }
        case kVsockOpResponse: {
            if (!c || c->state != Connection::kConnecting) {
                queue_control(local, peer, kVsockOpRst);
                return;
            }
            c->state = Connection::kEstablished;
            std::string ok = "OK " + std::to_string(local) + "\n";
            c->pending.insert(c->pending.begin(), ok.begin(), ok.end());
            flush(*c);
            return;
        }
        case kVsockOpRw: {
            if (!c || c->state != Connection::kEstablished || c->peer_no_send) {
                queue_control(local, peer, kVsockOpRst);
                return;
            }
            uint64_t payload = chain.readable_len - sizeof h;
            // More than the header says is there, or more than our advertised
            // buffer holds: the guest broke the protocol; drop the connection.
            if (h.len > payload || h.len > kMaxPayload || c->pending.size() + h.len > kBufAlloc + 64) {
                queue_control(local, peer, kVsockOpRst);
                close_connection(key(local, peer));
                return;
            }
            size_t old = c->pending.size();
            c->pending.resize(old + h.len);
            chain.read(transport_->memory(), sizeof h, {c->pending.data() + old, h.len});
            c->recv_cnt += h.len;
            flush(*c);
            return;
        }
        case kVsockOpCreditUpdate: return;  // credit fields were taken above
        case kVsockOpCreditRequest:
            if (c)
                queue_control(local, peer, kVsockOpCreditUpdate);
            else
                queue_control(local, peer, kVsockOpRst);
            return;
        case kVsockOpShutdown:
            if (!c) return;
            if (h.flags & kVsockShutdownSend) c->peer_no_send = true;
            if (h.flags & kVsockShutdownRcv) c->peer_no_recv = true;
            flush(*c);
            if (c->peer_no_send && c->peer_no_recv) {
                // Both directions closed: finish with RST, as Linux's vhost does.
                queue_control(local, peer, kVsockOpRst);
                close_connection(key(local, peer));
            } else if (c->peer_no_send && c->pending.empty()) {
                ::shutdown(c->sock.get(), SHUT_WR);
            }
            return;
        case kVsockOpRst:
            if (c) close_connection(key(local, peer));
            return;
        default:
            queue_control(local, peer, kVsockOpRst);
            if (c) close_connection(key(local, peer));
            return;
    }
}

void Vsock::flush(Connection& c) {
    while (!c.pending.empty() && c.writable) {
        ssize_t n = ::send(c.sock.get(), c.pending.data(), c.pending.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c.writable = false;  // EPOLLOUT edge resumes
            break;
        }
        if (n <= 0) {  // host side gone: tell the guest, which answers with RST
            c.pending.clear();
            if (!c.host_eof) {
                c.host_eof = true;
                queue_control(c.local_port, c.peer_port, kVsockOpShutdown, kVsockShutdownRcv | kVsockShutdownSend);
            }
            break;
        }
        c.pending.erase(c.pending.begin(), c.pending.begin() + n);
        // The "OK" line of a host-initiated connection is not guest data.
        c.fwd_cnt = c.recv_cnt - uint32_t(std::min<size_t>(c.pending.size(), c.recv_cnt));
    }
    if (c.pending.empty() && c.peer_no_send && !c.peer_no_recv) ::shutdown(c.sock.get(), SHUT_WR);
    // Tell the guest about freed space before it sees less than one packet's worth.
    uint32_t seen_free = kBufAlloc - std::min(kBufAlloc, c.recv_cnt - c.fwd_cnt_sent);
    if (c.fwd_cnt != c.fwd_cnt_sent && seen_free < kMaxPayload && !c.credit_update_queued &&
        c.state == Connection::kEstablished) {
        c.credit_update_queued = true;
        queue_control(c.local_port, c.peer_port, kVsockOpCreditUpdate);
    }
}

void Vsock::on_listener() {
    for (;;) {
        Fd s(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (!s) return;                                                       // EAGAIN, or an error we cannot act on
        if (handshakes_.size() + conns_.size() >= kMaxConnections) continue;  // closes it
        auto c = std::make_unique<Connection>();
        c->sock = std::move(s);
        int fd = c->sock.get();
        if (!watch_socket(fd)) continue;
        handshakes_[fd] = std::move(c);
    }
}

void Vsock::handshake(Connection& c) {
    int fd = c.sock.get();
    char buf[32];
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    const char* nl = n > 0 ? static_cast<const char*>(std::memchr(buf, '\n', size_t(n))) : nullptr;
    if (!nl && n > 0 && size_t(n) < sizeof buf) return;  // line not complete yet
    uint32_t port = 0;
    bool ok = false;
    if (nl) {
        [[maybe_unused]] auto r = ::recv(fd, buf, size_t(nl - buf + 1), MSG_DONTWAIT);  // consume the line only
        std::string_view line(buf, size_t(nl - buf));
        if (line.ends_with('\r')) line.remove_suffix(1);
        if (line.starts_with("CONNECT ")) {
            line.remove_prefix(8);
            auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), port);
            ok = ec == std::errc() && p == line.data() + line.size();
        }
    }
    auto owned = std::move(handshakes_[fd]);
    handshakes_.erase(fd);
    if (!ok) {
        transport_->unwatch(fd);
        return;  // closes the socket: bad or missing handshake
    }
    uint32_t local;
    do {  // host-side ports live above 2^30, away from well-known guest ports
        if (next_local_port_ < (1u << 30)) next_local_port_ = 1u << 30;
        local = next_local_port_++;
    } while (conns_.contains(key(local, port)));
    owned->local_port = local;
    owned->peer_port = port;
    owned->state = Connection::kConnecting;
    owned->readable = true;  // data may follow the line
    uint64_t k = key(owned->local_port, port);
    by_fd_[fd] = k;
    conns_[k] = std::move(owned);
    queue_control(conns_[k]->local_port, port, kVsockOpRequest);
}

void Vsock::on_socket(int fd, uint32_t events) {
    if (auto h = handshakes_.find(fd); h != handshakes_.end()) {
        handshake(*h->second);
    } else if (auto it = by_fd_.find(fd); it != by_fd_.end()) {
        Connection& c = *conns_.at(it->second);
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) c.readable = true;
        if (events & EPOLLOUT) {
            c.writable = true;
            flush(c);
        }
    }
    process_rx();
}

void Vsock::process_rx() {
    if (!transport_ || transport_->failed()) return;
    Queue& q = transport_->queue(0);
    if (!q.ready) return;
    auto& mem = transport_->memory();
    bool used = false;
    auto deliver = [&](const DescriptorChain& chain, const VsockHeader& h) -> bool {
        chain.write(mem, 0, {reinterpret_cast<const uint8_t*>(&h), sizeof h});
        if (auto r = q.add_used(mem, chain, uint32_t(sizeof h + h.len)); !r) {
            transport_->fail(r.error().message);
            return false;
        }
        used = true;
        return true;
    };
    auto pop = [&]() -> std::optional<DescriptorChain> {
        auto next = q.pop(mem);
        if (!next) {
            transport_->fail("rx: " + next.error().message);
            return std::nullopt;
        }
        if (*next && ((*next)->writable_len < sizeof(VsockHeader) || (*next)->readable_len)) {
            transport_->fail("rx: buffer is not device-writable or shorter than the header");
            return std::nullopt;
        }
        return std::move(*next);
    };

    // Control packets first: they carry connection state and credit.
    while (!control_.empty()) {
        auto chain = pop();
        if (!chain) goto done;
        Control ctl = control_.front();
        control_.pop_front();
        if (Connection* c = find(ctl.local_port, ctl.peer_port); c && ctl.op == kVsockOpCreditUpdate)
            c->credit_update_queued = false;
        if (!deliver(*chain, header_for(ctl.local_port, ctl.peer_port, ctl.op, ctl.flags, 0))) return;
    }
    // Then data, one packet per connection per round so none starves the others.
    for (bool progress = true; progress;) {
        progress = false;
        for (auto it = conns_.begin(); it != conns_.end();) {
            Connection& c = *it->second;
            ++it;
            if (c.state != Connection::kEstablished || !c.readable || c.host_eof || c.peer_no_recv) continue;
            uint32_t credit = peer_credit(c);
            if (credit == 0) continue;  // the guest's next credit update resumes
            auto chain = pop();
            if (!chain) goto done;
            uint64_t room = std::min<uint64_t>({chain->writable_len - sizeof(VsockHeader), credit, kMaxPayload});
            auto iov = chain->iovecs(mem, true, sizeof(VsockHeader), room);
            ssize_t n =
                iov.empty() ? -1 : ::readv(c.sock.get(), iov.data(), int(std::min<size_t>(iov.size(), IOV_MAX)));
            if (n > 0) {
                c.rx_cnt += uint32_t(n);
                if (!deliver(*chain, header_for(c.local_port, c.peer_port, kVsockOpRw, 0, uint32_t(n)))) return;
                progress = true;
                continue;
            }
            q.undo_pop();
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || iov.empty())) {
                if (!iov.empty() && errno != EINTR) c.readable = false;
                continue;
            }
            // End of stream (or a broken socket): the host will send no more.
            c.host_eof = true;
            queue_control(c.local_port, c.peer_port, kVsockOpShutdown, kVsockShutdownRcv | kVsockShutdownSend);
            progress = true;
        }
        // Shutdowns queued above go out before the next round of data.
        while (!control_.empty()) {
            auto chain = pop();
            if (!chain) goto done;
            Control ctl = control_.front();
            control_.pop_front();
            if (!deliver(*chain, header_for(ctl.local_port, ctl.peer_port, ctl.op, ctl.flags, 0))) return;
        }
    }
done:
    if (used) transport_->signal_used(0);
}

}  // namespace vessel::devices::virtio
