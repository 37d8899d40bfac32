// Sockets a guest can have today: AF_UNIX pairs (socketpair), each end a
// host socket of the same type behind a guest descriptor. Event loops
// (asyncio, libuv, GLib) make one to wake themselves. Data moves between
// guest memory and the host socket in one host call per guest call, so a
// datagram stays one datagram. No socket(2), no addresses, no control
// messages yet (issue 17: the network and SCM_RIGHTS).
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "thin/process.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

// The guest buffers [va, va+len) as host iovecs pointing into guest memory
// (appended to `out`); false on a bad pointer.
bool map_buffer(Process& p, uint64_t va, uint64_t len, bool to_guest, std::vector<iovec>& out) {
    if (!len) return true;
    return p.mem().for_each_chunk(va, len, to_guest, [&](uint8_t* h, uint64_t n) { out.push_back({h, n}); });
}

// The guest's iovec array, mapped; -errno on failure.
int64_t map_iovecs(Process& p, uint64_t iov, uint64_t count, bool to_guest, std::vector<iovec>& out) {
    if (count > IOV_MAX) return -EMSGSIZE;
    std::vector<iovec> guest(count);
    if (count && !p.mem().read(iov, guest.data(), count * sizeof(iovec))) return -EFAULT;
    uint64_t total = 0;
    for (const iovec& v : guest) {
        total += v.iov_len;
        if (v.iov_len > kMaxIo || total > kMaxIo) return -EINVAL;
        if (!map_buffer(p, reinterpret_cast<uint64_t>(v.iov_base), v.iov_len, to_guest, out)) return -EFAULT;
    }
    return 0;
}

// The flags a guest may pass; MSG_NOSIGNAL is always added on the host
// (a closed peer is EPIPE for the guest, never SIGPIPE for the VMM).
constexpr int kSendFlags = MSG_DONTWAIT | MSG_NOSIGNAL | MSG_MORE | MSG_EOR;
constexpr int kRecvFlags = MSG_DONTWAIT | MSG_PEEK | MSG_TRUNC | MSG_WAITALL | MSG_CMSG_CLOEXEC;

int64_t send_common(Process& p, uint64_t fd, std::vector<iovec>& iov, uint64_t flags) {
    OpenFile* f = file_of(p, fd);
    if (!f) return -EBADF;
    if (flags & ~uint64_t(kSendFlags)) return -EOPNOTSUPP;
    if (iov.size() > IOV_MAX) return -EMSGSIZE;
    msghdr m{};
    m.msg_iov = iov.data();
    m.msg_iovlen = iov.size();
    ssize_t n = ::sendmsg(f->host.get(), &m, static_cast<int>(flags) | MSG_NOSIGNAL);
    return n < 0 ? -errno : n;
}

// Receives into `iov`; the sender's address (unnamed for a pair) goes to
// the guest's name buffer when it gives one.
int64_t recv_common(Process& p, uint64_t fd, std::vector<iovec>& iov, uint64_t flags, uint64_t name,
                    uint64_t namelen_ptr, int* msg_flags) {
    OpenFile* f = file_of(p, fd);
    if (!f) return -EBADF;
    if (flags & ~uint64_t(kRecvFlags)) return -EOPNOTSUPP;
    if (iov.size() > IOV_MAX) return -EMSGSIZE;
    sockaddr_storage from{};
    msghdr m{};
    m.msg_iov = iov.data();
    m.msg_iovlen = iov.size();
    m.msg_name = &from;
    m.msg_namelen = sizeof from;
    ssize_t n = ::recvmsg(f->host.get(), &m, static_cast<int>(flags & ~uint64_t(MSG_CMSG_CLOEXEC)));
    if (n < 0) return -errno;
    if (msg_flags) *msg_flags = m.msg_flags;
    if (name && namelen_ptr) {
        uint32_t room;
        if (!p.mem().read_obj(namelen_ptr, room)) return -EFAULT;
        uint32_t len = m.msg_namelen;
        if (!p.mem().write(name, &from, std::min(room, len))) return -EFAULT;
        if (!p.mem().write_obj(namelen_ptr, len)) return -EFAULT;
    }
    return n;
}

}  // namespace

int64_t sys_socketpair(Process& p, SocketpairArgs a) {
    if (a.domain() != AF_UNIX) return -EAFNOSUPPORT;
    int type = static_cast<int>(a.type()) & ~(SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (type != SOCK_STREAM && type != SOCK_DGRAM && type != SOCK_SEQPACKET) return -EINVAL;
    if (a.type() & ~uint64_t(type | SOCK_NONBLOCK | SOCK_CLOEXEC)) return -EINVAL;
    if (a.protocol() != 0) return -EPROTONOSUPPORT;
    int host[2];
    if (::socketpair(AF_UNIX, type | (static_cast<int>(a.type()) & SOCK_NONBLOCK) | SOCK_CLOEXEC, 0, host) < 0)
        return -errno;
    return install_pair(p, Fd(host[0]), Fd(host[1]), a.type() & SOCK_CLOEXEC, a.sv());
}

int64_t sys_shutdown(Process& p, ShutdownArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    return ::shutdown(f->host.get(), static_cast<int>(a.how())) < 0 ? -errno : 0;
}

int64_t sys_sendto(Process& p, SendtoArgs a) {
    if (a.addr()) return -EISCONN;  // a pair is connected; no other sockets yet
    std::vector<iovec> iov;
    if (a.len() > kMaxIo) return -EMSGSIZE;
    if (!map_buffer(p, a.buf(), a.len(), false, iov)) return -EFAULT;
    return send_common(p, a.fd(), iov, a.flags());
}

int64_t sys_recvfrom(Process& p, SendtoArgs a) {
    std::vector<iovec> iov;
    if (!map_buffer(p, a.buf(), std::min<uint64_t>(a.len(), kMaxIo), true, iov)) return -EFAULT;
    return recv_common(p, a.fd(), iov, a.flags(), a.addr(), a.addrlen(), nullptr);
}

int64_t sys_sendmsg(Process& p, MsgArgs a) {
    msghdr m;
    if (!p.mem().read_obj(a.msg(), m)) return -EFAULT;
    if (m.msg_name && m.msg_namelen) return -EISCONN;
    if (m.msg_controllen) return -EOPNOTSUPP;  // control messages (SCM_RIGHTS): not yet
    std::vector<iovec> iov;
    if (int64_t r = map_iovecs(p, reinterpret_cast<uint64_t>(m.msg_iov), m.msg_iovlen, false, iov); r < 0) return r;
    return send_common(p, a.fd(), iov, a.flags());
}

int64_t sys_recvmsg(Process& p, MsgArgs a) {
    msghdr m;
    if (!p.mem().read_obj(a.msg(), m)) return -EFAULT;
    std::vector<iovec> iov;
    if (int64_t r = map_iovecs(p, reinterpret_cast<uint64_t>(m.msg_iov), m.msg_iovlen, true, iov); r < 0) return r;
    int flags = 0;
    uint64_t namelen_at = a.msg() + offsetof(msghdr, msg_namelen);
    int64_t n = recv_common(p, a.fd(), iov, a.flags(), reinterpret_cast<uint64_t>(m.msg_name),
                            m.msg_name ? namelen_at : 0, &flags);
    if (n < 0) return n;
    // No control data is ever received here (none can be sent yet).
    uint64_t zero = 0;
    if (!p.mem().write_obj(a.msg() + offsetof(msghdr, msg_controllen), zero) ||
        !p.mem().write_obj(a.msg() + offsetof(msghdr, msg_flags), flags))
        return -EFAULT;
    return n;
}

namespace {

// SOL_SOCKET options passed to the host: integers (and the two timeouts).
bool option_allowed(int level, int name) {
    if (level != SOL_SOCKET) return false;
    switch (name) {
        case SO_TYPE:
        case SO_ERROR:
        case SO_DOMAIN:
        case SO_PROTOCOL:
        case SO_ACCEPTCONN:
        case SO_SNDBUF:
        case SO_RCVBUF:
        case SO_SNDLOWAT:
        case SO_RCVLOWAT:
        case SO_PASSCRED:
        case SO_KEEPALIVE:
        case SO_RCVTIMEO:
        case SO_SNDTIMEO: return true;
        default: return false;
    }
}

constexpr uint32_t kMaxOption = 64;

int64_t names_common(Process& p, NameArgs a, bool peer) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    uint32_t room;
    if (!p.mem().read_obj(a.addrlen(), room)) return -EFAULT;
    if (static_cast<int32_t>(room) < 0) return -EINVAL;
    sockaddr_storage s{};
    socklen_t len = sizeof s;
    if ((peer ? ::getpeername(f->host.get(), reinterpret_cast<sockaddr*>(&s), &len)
              : ::getsockname(f->host.get(), reinterpret_cast<sockaddr*>(&s), &len)) < 0)
        return -errno;
    if (!p.mem().write(a.addr(), &s, std::min<uint32_t>(room, len))) return -EFAULT;
    return p.mem().write_obj(a.addrlen(), static_cast<uint32_t>(len)) ? 0 : -EFAULT;
}

}  // namespace

int64_t sys_getsockopt(Process& p, SockoptArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (!option_allowed(a.level(), a.name())) return -ENOPROTOOPT;
    uint32_t room;
    if (!p.mem().read_obj(a.optlen(), room)) return -EFAULT;
    if (static_cast<int32_t>(room) < 0) return -EINVAL;
    uint8_t buf[kMaxOption] = {};
    socklen_t len = std::min<uint32_t>(room, kMaxOption);
    if (::getsockopt(f->host.get(), a.level(), a.name(), buf, &len) < 0) return -errno;
    if (!p.mem().write(a.optval(), buf, len)) return -EFAULT;
    return p.mem().write_obj(a.optlen(), static_cast<uint32_t>(len)) ? 0 : -EFAULT;
}

int64_t sys_setsockopt(Process& p, SockoptArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (!option_allowed(a.level(), a.name())) return -ENOPROTOOPT;
    uint64_t len = a.optlen();
    if (len > kMaxOption) return -EINVAL;
    uint8_t buf[kMaxOption];
    if (len && !p.mem().read(a.optval(), buf, len)) return -EFAULT;
    return ::setsockopt(f->host.get(), a.level(), a.name(), buf, static_cast<socklen_t>(len)) < 0 ? -errno : 0;
}

int64_t sys_getsockname(Process& p, NameArgs a) { return names_common(p, a, false); }
int64_t sys_getpeername(Process& p, NameArgs a) { return names_common(p, a, true); }

}  // namespace vessel::thin
