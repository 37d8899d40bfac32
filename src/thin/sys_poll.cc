// Waiting for descriptors: poll, ppoll, select, pselect6. The guest's
// descriptors are translated to the host's and the wait is one host
// ppoll(2); select's bit sets are turned into that list and back. A wait
// interrupted by Vessel's own kick (pause, snapshot, shutdown) answers
// -EINTR, which the vCPU loop turns into running the call again once
// resumed; ppoll, select and pselect6 first store the time left, as
// Linux does, so the restarted call waits only that long (poll cannot:
// it waits its whole timeout again).
#include <poll.h>
#include <sys/select.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "thin/process.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

// The guest's pollfd list: at most its descriptor limit, as Linux's
// RLIMIT_NOFILE check.
constexpr uint64_t kMaxPollFds = FdTable::kMaxFds;
// A look without waiting: a timeout of zero.
constexpr std::optional<timespec> kNow = timespec{0, 0};

timespec now() {
    timespec t;
    ::clock_gettime(CLOCK_MONOTONIC, &t);
    return t;
}

// `deadline - now`, never negative.
timespec left_until(const timespec& deadline) {
    timespec n = now(), d{deadline.tv_sec - n.tv_sec, deadline.tv_nsec - n.tv_nsec};
    if (d.tv_nsec < 0) d.tv_sec -= 1, d.tv_nsec += 1000000000;
    if (d.tv_sec < 0) d = {0, 0};
    return d;
}

timespec after(const timespec& wait) {
    timespec n = now(), d{n.tv_sec + wait.tv_sec, n.tv_nsec + wait.tv_nsec};
    if (d.tv_nsec >= 1000000000) d.tv_sec += 1, d.tv_nsec -= 1000000000;
    return d;
}

// Polls the guest's `fds` in place (revents set; a descriptor that is not
// open gets POLLNVAL, a negative one is skipped), waiting at most `timeout`
// (nullopt: for ever). Returns how many have events, or -errno.
int64_t poll_guest(Process& p, std::vector<pollfd>& fds, const std::optional<timespec>& timeout) {
    std::vector<pollfd> host;
    std::vector<size_t> which;  // host[i] is fds[which[i]]
    int64_t ready = 0;
    for (size_t i = 0; i < fds.size(); ++i) {
        fds[i].revents = 0;
        if (fds[i].fd < 0) continue;
        OpenFile* f = file_of(p, static_cast<uint64_t>(fds[i].fd));
        if (!f) {
            fds[i].revents = POLLNVAL;
            ++ready;
            continue;
        }
        host.push_back({f->host.get(), fds[i].events, 0});
        which.push_back(i);
    }
    // An invalid descriptor is an event: answer at once, as Linux does.
    timespec zero{0, 0};
    const timespec* wait = ready ? &zero : timeout ? &*timeout : nullptr;
    int n = ::ppoll(host.data(), host.size(), wait, nullptr);
    if (n < 0) return -errno;
    for (size_t i = 0; i < host.size(); ++i) {
        fds[which[i]].revents = host[i].revents;
        if (host[i].revents) ++ready;
    }
    return ready;
}

int64_t read_pollfds(Process& p, uint64_t ptr, uint64_t nfds, std::vector<pollfd>& fds) {
    if (nfds > kMaxPollFds) return -EINVAL;
    fds.resize(nfds);
    if (nfds && !p.mem().read(ptr, fds.data(), nfds * sizeof(pollfd))) return -EFAULT;
    return 0;
}

int64_t write_revents(Process& p, uint64_t ptr, const std::vector<pollfd>& fds, int64_t r) {
    if (r < 0 || fds.empty()) return r;
    return p.mem().write(ptr, fds.data(), fds.size() * sizeof(pollfd)) ? r : -EFAULT;
}

// select's three bit sets as a poll list and back.
struct SelectSets {
    uint64_t ptr[3] = {};  // read, write, except (guest addresses, 0: none)
    fd_set in[3], out[3];
};

int64_t select_common(Process& p, int nfds, SelectSets& s, const std::optional<timespec>& timeout) {
    if (nfds < 0 || nfds > FD_SETSIZE) return -EINVAL;
    size_t bytes = (static_cast<size_t>(nfds) + 7) / 8;
    for (int k = 0; k < 3; ++k) {
        FD_ZERO(&s.in[k]);
        FD_ZERO(&s.out[k]);
        if (s.ptr[k] && bytes && !p.mem().read(s.ptr[k], &s.in[k], bytes)) return -EFAULT;
    }
    constexpr short kAsked[3] = {POLLIN, POLLOUT, POLLPRI};
    std::vector<pollfd> fds;
    for (int fd = 0; fd < nfds; ++fd) {
        short events = 0;
        for (int k = 0; k < 3; ++k)
            if (s.ptr[k] && FD_ISSET(fd, &s.in[k])) events |= kAsked[k];
        if (!events) continue;
        if (!file_of(p, static_cast<uint64_t>(fd))) return -EBADF;  // select refuses what poll flags
        fds.push_back({fd, events, 0});
    }
    int64_t r = poll_guest(p, fds, timeout);
    if (r < 0) return r;
    // Linux's masks (fs/select.c): readable includes hang-up and error,
    // writable includes error.
    constexpr short kMeans[3] = {POLLIN | POLLHUP | POLLERR, POLLOUT | POLLERR, POLLPRI};
    int64_t bits = 0;
    for (const pollfd& f : fds)
        for (int k = 0; k < 3; ++k)
            if ((f.events & kAsked[k]) && (f.revents & kMeans[k])) {
                FD_SET(f.fd, &s.out[k]);
                ++bits;
            }
    for (int k = 0; k < 3; ++k)
        if (s.ptr[k] && bytes && !p.mem().write(s.ptr[k], &s.out[k], bytes)) return -EFAULT;
    return bits;
}

// Runs `wait` with a deadline and stores the time left into the guest's
// timespec (`ts_ptr`) or timeval (`tv_ptr`) afterwards, as Linux does.
template <class Wait>
int64_t with_time_left(Process& p, const std::optional<timespec>& timeout, uint64_t ts_ptr, uint64_t tv_ptr,
                       Wait&& wait) {
    std::optional<timespec> deadline;
    if (timeout) deadline = after(*timeout);
    int64_t r = wait();
    if (deadline) {
        timespec left = left_until(*deadline);
        if (ts_ptr) (void)p.mem().write_obj(ts_ptr, left);
        if (tv_ptr) {
            timeval tv{left.tv_sec, left.tv_nsec / 1000};
            (void)p.mem().write_obj(tv_ptr, tv);
        }
    }
    return r;
}

}  // namespace

int64_t sys_poll(Process& p, PollArgs a) {
    std::vector<pollfd> fds;
    if (int64_t r = read_pollfds(p, a.fds(), a.nfds(), fds); r < 0) return r;
    std::optional<timespec> timeout;
    int ms = a.timeout();
    if (ms >= 0) timeout = timespec{ms / 1000, (ms % 1000) * 1000000L};
    return write_revents(p, a.fds(), fds, poll_guest(p, fds, timeout));
}

int64_t sys_ppoll(Process& p, PpollArgs a) {
    std::vector<pollfd> fds;
    if (int64_t r = read_pollfds(p, a.fds(), a.nfds(), fds); r < 0) return r;
    std::optional<timespec> timeout;
    if (int64_t r = read_timeout(p, a.tsp(), timeout); r < 0) return r;
    std::optional<uint64_t> mask;
    if (int64_t r = read_sigmask_arg(p, a.mask(), a.sigsetsize(), mask); r < 0) return r;
    int64_t r = with_time_left(p, timeout, a.tsp(), 0, [&] {
        return wait_with_sigmask(p, mask, [&](bool at_once) { return poll_guest(p, fds, at_once ? kNow : timeout); });
    });
    return write_revents(p, a.fds(), fds, r);
}

int64_t sys_select(Process& p, SelectArgs a) {
    SelectSets s;
    s.ptr[0] = a.readfds(), s.ptr[1] = a.writefds(), s.ptr[2] = a.exceptfds();
    std::optional<timespec> timeout;
    if (a.timeout()) {
        timeval tv;
        if (!p.mem().read_obj(a.timeout(), tv)) return -EFAULT;
        if (tv.tv_sec < 0 || tv.tv_usec < 0 || tv.tv_usec >= 1000000) return -EINVAL;
        timeout = timespec{tv.tv_sec, tv.tv_usec * 1000};
    }
    return with_time_left(p, timeout, 0, a.timeout(), [&] { return select_common(p, a.nfds(), s, timeout); });
}

int64_t sys_pselect6(Process& p, Pselect6Args a) {
    SelectSets s;
    s.ptr[0] = a.readfds(), s.ptr[1] = a.writefds(), s.ptr[2] = a.exceptfds();
    std::optional<timespec> timeout;
    if (int64_t r = read_timeout(p, a.tsp(), timeout); r < 0) return r;
    std::optional<uint64_t> mask;
    if (a.sig()) {  // {const sigset_t* ss; size_t ss_len}
        uint64_t sig[2];
        if (!p.mem().read(a.sig(), sig, sizeof sig)) return -EFAULT;
        if (int64_t r = read_sigmask_arg(p, sig[0], sig[1], mask); r < 0) return r;
    }
    return with_time_left(p, timeout, a.tsp(), 0, [&] {
        return wait_with_sigmask(p, mask,
                                 [&](bool at_once) { return select_common(p, a.nfds(), s, at_once ? kNow : timeout); });
    });
}

}  // namespace vessel::thin
