// Event descriptors: epoll, eventfd and timerfd, each a host descriptor of
// the same kind behind a guest descriptor, and signalfd, a host eventfd
// kept readable while a signal of its set is pending (the signals are the
// process's: thin/signals.cc reads them). epoll keeps the guest's `data` as
// given and hands it back untouched; the descriptors it watches are the
// host's behind the guest's, so closing the last guest descriptor of a file
// drops it from every epoll set, as on Linux. None of them can be
// snapshotted yet (like pipes: the snapshot names the descriptor).
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

#include <cerrno>
#include <climits>
#include <vector>

#include "thin/process.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

// A new guest descriptor for a new host one (`host` < 0: its errno).
int64_t install_new(Process& p, int host, bool cloexec) {
    if (host < 0) return -errno;
    auto f = std::make_shared<OpenFile>();
    f->host.reset(host);
    return p.fds().install(std::move(f), cloexec);
}

// The most events one wait returns (Linux: INT_MAX / sizeof(epoll_event)).
constexpr uint64_t kMaxEvents = INT_MAX / sizeof(epoll_event);

int64_t epoll_wait_common(Process& p, uint64_t epfd, uint64_t events, uint64_t maxevents, int timeout_ms,
                          const timespec* timeout) {
    OpenFile* f = file_of(p, epfd);
    if (!f) return -EBADF;
    if (static_cast<int64_t>(maxevents) <= 0 || maxevents > kMaxEvents) return -EINVAL;
    // Bounded by what the guest can take in one call and by a MiB of ours.
    size_t n = std::min<uint64_t>(maxevents, (1 << 20) / sizeof(epoll_event));
    // Checked before waiting: events taken from the host set and then not
    // stored would be lost (edge-triggered ones for good).
    if (!p.mem().for_each_chunk(events, n * sizeof(epoll_event), true, [](uint8_t*, uint64_t) {})) return -EFAULT;
    std::vector<epoll_event> out(n);
    int r = timeout ? ::epoll_pwait2(f->host.get(), out.data(), static_cast<int>(n), timeout, nullptr)
                    : ::epoll_wait(f->host.get(), out.data(), static_cast<int>(n), timeout_ms);
    if (r < 0) return -errno;
    if (r > 0 && !p.mem().write(events, out.data(), static_cast<size_t>(r) * sizeof(epoll_event))) return -EFAULT;
    return r;
}

}  // namespace

int64_t sys_epoll_create1(Process& p, EpollCreate1Args a) {
    if (a.flags() & ~uint64_t(EPOLL_CLOEXEC)) return -EINVAL;
    return install_new(p, ::epoll_create1(EPOLL_CLOEXEC), a.flags() & EPOLL_CLOEXEC);
}

int64_t sys_epoll_create(Process& p, EpollCreateArgs a) {
    if (static_cast<int>(a.size()) <= 0) return -EINVAL;  // ignored otherwise, as on Linux
    return install_new(p, ::epoll_create1(EPOLL_CLOEXEC), false);
}

int64_t sys_epoll_ctl(Process& p, EpollCtlArgs a) {
    OpenFile* ep = file_of(p, a.epfd());
    OpenFile* f = file_of(p, a.fd());
    if (!ep || !f) return -EBADF;
    epoll_event ev{};
    if (a.op() != EPOLL_CTL_DEL && !p.mem().read_obj(a.event(), ev)) return -EFAULT;
    if (a.epfd() == a.fd()) return -EINVAL;
    return ::epoll_ctl(ep->host.get(), static_cast<int>(a.op()), f->host.get(), &ev) < 0 ? -errno : 0;
}

int64_t sys_epoll_wait(Process& p, EpollWaitArgs a) {
    return epoll_wait_common(p, a.epfd(), a.events(), a.maxevents(), a.timeout(), nullptr);
}

int64_t sys_epoll_pwait(Process& p, EpollWaitArgs a) {
    std::optional<uint64_t> mask;
    if (int64_t r = read_sigmask_arg(p, a.mask(), a.sigsetsize(), mask); r < 0) return r;
    return wait_with_sigmask(p, mask, [&](bool at_once) {
        return epoll_wait_common(p, a.epfd(), a.events(), a.maxevents(), at_once ? 0 : a.timeout(), nullptr);
    });
}

int64_t sys_epoll_pwait2(Process& p, EpollWaitArgs a) {
    std::optional<uint64_t> mask;
    if (int64_t r = read_sigmask_arg(p, a.mask(), a.sigsetsize(), mask); r < 0) return r;
    std::optional<timespec> timeout;
    if (int64_t r = read_timeout(p, a.timeout_ptr(), timeout); r < 0) return r;
    return wait_with_sigmask(p, mask, [&](bool at_once) {
        const timespec now{};
        const timespec* t = at_once ? &now : timeout ? &*timeout : nullptr;
        return epoll_wait_common(p, a.epfd(), a.events(), a.maxevents(), -1, t);
    });
}

int64_t sys_eventfd(Process& p, Eventfd2Args a) {
    return install_new(p, ::eventfd(static_cast<unsigned>(a.initval()), EFD_CLOEXEC), false);
}

int64_t sys_eventfd2(Process& p, Eventfd2Args a) {
    if (a.flags() & ~uint64_t(EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE)) return -EINVAL;
    int flags = static_cast<int>(a.flags() & (EFD_NONBLOCK | EFD_SEMAPHORE)) | EFD_CLOEXEC;
    return install_new(p, ::eventfd(static_cast<unsigned>(a.initval()), flags), a.flags() & EFD_CLOEXEC);
}

int64_t sys_timerfd_create(Process& p, TimerfdCreateArgs a) {
    if (a.flags() & ~uint64_t(TFD_CLOEXEC | TFD_NONBLOCK)) return -EINVAL;
    clockid_t clock = static_cast<clockid_t>(a.clockid());
    if (clock != CLOCK_REALTIME && clock != CLOCK_MONOTONIC && clock != CLOCK_BOOTTIME) return -EINVAL;
    int flags = static_cast<int>(a.flags() & TFD_NONBLOCK) | TFD_CLOEXEC;
    return install_new(p, ::timerfd_create(clock, flags), a.flags() & TFD_CLOEXEC);
}

namespace {

// signalfd and signalfd4: a new descriptor (`fd` -1) or a new set for one.
int64_t signalfd_common(Process& p, int fd, uint64_t mask_ptr, uint64_t sizemask, uint64_t flags) {
    if (flags & ~uint64_t(SFD_CLOEXEC | SFD_NONBLOCK)) return -EINVAL;
    if (sizemask != sizeof(uint64_t)) return -EINVAL;
    uint64_t mask;
    if (!p.mem().read_obj(mask_ptr, mask)) return -EFAULT;
    mask &= ~kUnblockable;  // SIGKILL and SIGSTOP, silently, as Linux
    if (fd != -1) {
        OpenFile* f = file_of(p, static_cast<uint64_t>(fd));
        if (!f) return -EBADF;
        if (!f->signalfd) return -EINVAL;
        f->signalfd->mask = mask;
        p.sync_signalfds();
        return fd;
    }
    int host = ::eventfd(0, EFD_CLOEXEC | ((flags & SFD_NONBLOCK) ? EFD_NONBLOCK : 0));
    if (host < 0) return -errno;
    auto f = std::make_shared<OpenFile>();
    f->host.reset(host);
    f->signalfd = OpenFile::SignalFd{mask, false};
    const int64_t installed = p.fds().install(f, flags & SFD_CLOEXEC);
    if (installed >= 0) p.add_signalfd(f);
    return installed;
}

}  // namespace

int64_t sys_signalfd(Process& p, SignalfdArgs a) { return signalfd_common(p, a.fd(), a.mask(), a.sizemask(), 0); }

int64_t sys_signalfd4(Process& p, SignalfdArgs a) {
    return signalfd_common(p, a.fd(), a.mask(), a.sizemask(), a.flags());
}

int64_t sys_timerfd_settime(Process& p, TimerfdSettimeArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (a.flags() & ~uint64_t(TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET)) return -EINVAL;
    itimerspec set, old{};
    if (!p.mem().read_obj(a.new_value(), set)) return -EFAULT;
    if (::timerfd_settime(f->host.get(), static_cast<int>(a.flags()), &set, &old) < 0) return -errno;
    if (a.old_value() && !p.mem().write_obj(a.old_value(), old)) return -EFAULT;
    return 0;
}

int64_t sys_timerfd_gettime(Process& p, TimerfdGettimeArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    itimerspec cur;
    if (::timerfd_gettime(f->host.get(), &cur) < 0) return -errno;
    return p.mem().write_obj(a.curr_value(), cur) ? 0 : -EFAULT;
}

}  // namespace vessel::thin
