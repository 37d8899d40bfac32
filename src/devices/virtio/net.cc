#include "devices/virtio/net.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace vessel::devices::virtio {

Result<MacAddress> parse_mac(std::string_view text) {
    MacAddress mac{};
    for (size_t i = 0; i < 6; ++i) {
        if (text.size() < 2) return fail("bad MAC address (want 52:54:00:12:34:56)");
        auto [p, ec] = std::from_chars(text.data(), text.data() + 2, mac[i], 16);
        if (ec != std::errc() || p != text.data() + 2) return fail("bad MAC address (want 52:54:00:12:34:56)");
        text.remove_prefix(2);
        if (i < 5) {
            if (text.empty() || text[0] != ':') return fail("bad MAC address (want 52:54:00:12:34:56)");
            text.remove_prefix(1);
        }
    }
    if (!text.empty()) return fail("bad MAC address (want 52:54:00:12:34:56)");
    if (mac[0] & 1) return fail("MAC address is a multicast address");
    return mac;
}

Result<NetConfig> parse_net_spec(std::string_view spec) {
    NetConfig c;
    while (!spec.empty()) {
        size_t comma = spec.find(',');
        std::string_view opt = spec.substr(0, comma);
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        size_t eq = opt.find('=');
        if (eq == std::string_view::npos) return fail("--net: option '" + std::string(opt) + "' needs a value");
        std::string_view key = opt.substr(0, eq), value = opt.substr(eq + 1);
        if (key == "tap") {
            if (value.empty() || value.size() >= IFNAMSIZ) return fail("--net: bad TAP interface name");
            c.tap = std::string(value);
        } else if (key == "mac") {
            auto mac = parse_mac(value);
            if (!mac) return wrap("--net", mac.error());
            c.mac = *mac;
        } else {
            auto r = parse_rate_limit_option(key, value, c.limit);
            if (!r) return wrap("--net", r.error());
            if (!*r) return fail("--net: unknown option '" + std::string(key) + "'");
        }
    }
    if (c.tap.empty()) return fail("--net: missing tap=NAME");
    return c;
}

Result<Fd> open_tap(const std::string& name) {
    if (name.empty() || name.size() >= IFNAMSIZ) return fail("TAP name '" + name + "' is empty or too long");
    Fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) return fail_errno("/dev/net/tun");
    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.data(), name.size());
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
        if (errno == EPERM)
            return fail("TAP " + name + ": permission denied — create it with `ip tuntap add " + name +
                            " mode tap user $USER` or run as root",
                        EPERM);
        return fail_errno("TAP " + name + ": TUNSETIFF");
    }
    int hdr = int(kNetHdrSize);
    if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr) < 0) return fail_errno("TAP " + name + ": TUNSETVNETHDRSZ");
    return fd;
}

Result<std::unique_ptr<Net>> Net::create(Fd backend, Backend kind, std::optional<MacAddress> mac, RateLimit limit,
                                         Clock clock) {
    if (!backend) return fail("virtio-net: no back-end fd");
    std::unique_ptr<Net> n(new Net());
    int flags = ::fcntl(backend.get(), F_GETFL);
    if (flags < 0 || ::fcntl(backend.get(), F_SETFL, flags | O_NONBLOCK) < 0) return fail_errno("virtio-net: fcntl");
    n->backend_ = std::move(backend);
    n->kind_ = kind;
    if (mac) {
        n->mac_ = *mac;
    } else {
        if (::getrandom(n->mac_.data(), n->mac_.size(), 0) != 6) return fail_errno("getrandom");
        n->mac_[0] = (n->mac_[0] & 0xfe) | 0x02;  // unicast, locally administered
    }
    n->config_ = n->mac_;
    n->rx_limiter_ = RateLimiter(limit, clock);
    n->tx_limiter_ = RateLimiter(limit, clock);
    return n;
}

uint64_t Net::features() const {
    return kNetFMac | kNetFCsum | kNetFGuestCsum | kNetFGuestTso4 | kNetFGuestTso6 | kNetFHostTso4 | kNetFHostTso6;
}

Result<> Net::activate(Transport& transport) {
    transport_ = &transport;
    uint64_t f = transport.acked_features();
    if (kind_ == kTap) {
        // The TAP may hand us only what the guest said it can receive.
        unsigned offload = 0;
        if (f & kNetFGuestCsum) {
            offload |= TUN_F_CSUM;
            if (f & kNetFGuestTso4) offload |= TUN_F_TSO4;
            if (f & kNetFGuestTso6) offload |= TUN_F_TSO6;
        }
        if (::ioctl(backend_.get(), TUNSETOFFLOAD, offload) < 0) return fail_errno("TAP: TUNSETOFFLOAD");
    }
    rx_pending_ = true;
    if (auto r = transport.watch(backend_.get(), EPOLLIN | EPOLLET,
                                 [this](uint32_t) {
                                     rx_pending_ = true;
                                     process_rx();
                                 });
        !r)
        return r;
    for (auto* l : {&rx_limiter_, &tx_limiter_}) {
        if (!l->enabled()) continue;
        if (l->timer_fd() < 0) return fail_errno("rate limiter timer");
        bool rx = l == &rx_limiter_;
        if (auto r = transport.watch(l->timer_fd(), EPOLLIN,
                                     [this, l, rx](uint32_t) {
                                         l->ack();
                                         rx ? process_rx() : process_tx();
                                     });
            !r)
            return r;
    }
    return {};
}

void Net::reset() { transport_ = nullptr; }

void Net::process_queue(unsigned index) {
    if (!transport_) return;
    if (index == 0)
        process_rx();  // new receive buffers
    else if (index == 1)
        process_tx();
}

void Net::process_rx() {
    if (!transport_) return;
    Queue& q = transport_->queue(0);
    auto& mem = transport_->memory();
    bool used = false;
    while (rx_pending_ && q.ready) {
        auto next = q.pop(mem);
        if (!next) {
            transport_->fail("rx: " + next.error().message);
            return;
        }
        if (!*next) break;  // no buffers: the driver's next rx notification resumes
        const DescriptorChain& chain = **next;
        if (chain.writable_len < kNetHdrSize || chain.readable_len) {
            transport_->fail("rx: buffer is not device-writable or shorter than the header");
            return;
        }
        // Frame sizes are known only after reading: admit on the op, charge bytes after.
        if (rx_limiter_.enabled() && !rx_limiter_.try_consume(1, 0)) {
            q.undo_pop();
            if (!rx_limiter_.armed()) rx_limiter_.arm(1, 0);
            break;
        }
        auto iov = chain.iovecs(mem, true, 0, std::min<uint64_t>(chain.writable_len, kNetMaxFrame));
        ssize_t n = ::readv(backend_.get(), iov.data(), int(std::min<size_t>(iov.size(), IOV_MAX)));
        if (n < 0) {
            q.undo_pop();
            if (errno != EINTR) rx_pending_ = false;  // EAGAIN: drained; others: wait for the next edge
            break;
        }
        if (size_t(n) < kNetHdrSize) {  // runt frame from the back-end: give the buffer back
            q.undo_pop();
            continue;
        }
        // Without VIRTIO_NET_F_MRG_RXBUF every frame takes exactly one buffer.
        uint16_t num_buffers = 1;
        chain.write(mem, 10, {reinterpret_cast<const uint8_t*>(&num_buffers), 2});
        rx_limiter_.charge(0, uint64_t(n) - kNetHdrSize);
        if (auto r = q.add_used(mem, chain, uint32_t(n)); !r) {
            transport_->fail(r.error().message);
            return;
        }
        counters_.rx_frames++;
        counters_.rx_bytes += uint64_t(n) - kNetHdrSize;
        used = true;
    }
    if (used) transport_->signal_used(0);
}

void Net::process_tx() {
    if (!transport_) return;
    auto& mem = transport_->memory();
    drain_queue(*transport_, 1, "tx: ", [&](const DescriptorChain& chain) {
        uint64_t len = chain.readable_len;
        if (len >= kNetHdrSize && len <= kNetMaxFrame) {
            if (tx_limiter_.enabled() && !tx_limiter_.try_consume(1, len - kNetHdrSize)) {
                if (!tx_limiter_.armed()) tx_limiter_.arm(1, len - kNetHdrSize);
                return Served::kNotYet;
            }
            auto iov = chain.iovecs(mem, false, 0, len);
            ssize_t n = ::writev(backend_.get(), iov.data(), int(std::min<size_t>(iov.size(), IOV_MAX)));
            // A full back-end drops the frame, as a NIC whose wire is busy would.
            if (n < 0) {
                counters_.tx_dropped++;
            } else {
                counters_.tx_frames++;
                counters_.tx_bytes += len - kNetHdrSize;
            }
        } else {
            counters_.tx_dropped++;  // runt or oversized frame
        }
        if (auto r = transport_->queue(1).add_used(mem, chain, 0); !r) transport_->fail(r.error().message);
        return Served::kDone;
    });
}

}  // namespace vessel::devices::virtio
