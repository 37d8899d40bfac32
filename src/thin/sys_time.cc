// Clocks and sleeps, answered from the host's clocks. CLOCK_REALTIME and
// CLOCK_MONOTONIC (and gettimeofday and time) come from the clock the
// guest-side entry shares once it is calibrated (Process::clock_ns), so a
// value served here never disagrees with one the guest computed itself.
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include "thin/process.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

bool clock_ok(uint64_t id) {
    switch (id) {
        case CLOCK_REALTIME:
        case CLOCK_MONOTONIC:
        case CLOCK_PROCESS_CPUTIME_ID:
        case CLOCK_THREAD_CPUTIME_ID:
        case CLOCK_MONOTONIC_RAW:
        case CLOCK_REALTIME_COARSE:
        case CLOCK_MONOTONIC_COARSE:
        case CLOCK_BOOTTIME:
        case CLOCK_REALTIME_ALARM:
        case CLOCK_BOOTTIME_ALARM:
        case CLOCK_TAI: return true;
        default: return false;  // negative ids name other processes' clocks
    }
}

timespec to_timespec(uint64_t ns) {
    return {static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
}

// The host's clock `id`, or the shared clock for the two it keeps.
int host_or_shared(Process& p, clockid_t id, timespec& ts) {
    if (id == CLOCK_REALTIME || id == CLOCK_MONOTONIC)
        if (auto ns = p.clock_ns(id == CLOCK_REALTIME)) {
            ts = to_timespec(*ns);
            return 0;
        }
    return ::clock_gettime(id, &ts) < 0 ? -errno : 0;
}

}  // namespace

int64_t sys_clock_gettime(Process& p, const SyscallArgs& a) {
    if (!clock_ok(a.a[0])) return -EINVAL;
    timespec ts;
    if (int r = host_or_shared(p, static_cast<clockid_t>(a.a[0]), ts); r < 0) return r;
    return p.mem().write_obj(a.a[1], ts) ? 0 : -EFAULT;
}

int64_t sys_clock_getres(Process& p, const SyscallArgs& a) {
    if (!clock_ok(a.a[0])) return -EINVAL;
    timespec ts;
    if (::clock_getres(static_cast<clockid_t>(a.a[0]), &ts) < 0) return -errno;
    return !a.a[1] || p.mem().write_obj(a.a[1], ts) ? 0 : -EFAULT;
}

int64_t sys_gettimeofday(Process& p, const SyscallArgs& a) {
    timespec ts;
    (void)host_or_shared(p, CLOCK_REALTIME, ts);
    timeval tv{ts.tv_sec, ts.tv_nsec / 1000};
    if (a.a[0] && !p.mem().write_obj(a.a[0], tv)) return -EFAULT;
    if (a.a[1]) {
        struct timezone tz{};
        if (!p.mem().write_obj(a.a[1], tz)) return -EFAULT;
    }
    return 0;
}

int64_t sys_time(Process& p, const SyscallArgs& a) {
    timespec ts;
    (void)host_or_shared(p, CLOCK_REALTIME, ts);
    int64_t t = ts.tv_sec;
    if (a.a[0] && !p.mem().write_obj(a.a[0], t)) return -EFAULT;
    return t;
}

namespace {

bool valid(const timespec& ts) { return ts.tv_sec >= 0 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000; }

int64_t sleep_common(Process& p, clockid_t clock, int flags, uint64_t req_ptr, uint64_t rem_ptr) {
    timespec req, rem{};
    if (!p.mem().read_obj(req_ptr, req)) return -EFAULT;
    if (!valid(req)) return -EINVAL;
    int r = ::clock_nanosleep(clock, flags, &req, &rem);
    if (r == EINTR && rem_ptr && !(flags & TIMER_ABSTIME)) p.mem().write_obj(rem_ptr, rem);
    return -r;
}

}  // namespace

int64_t sys_nanosleep(Process& p, const SyscallArgs& a) {
    return sleep_common(p, CLOCK_MONOTONIC, 0, a.a[0], a.a[1]);
}

int64_t sys_clock_nanosleep(Process& p, const SyscallArgs& a) {
    if (!clock_ok(a.a[0]) || a.a[0] == CLOCK_THREAD_CPUTIME_ID) return -EINVAL;
    if (a.a[1] & ~uint64_t(TIMER_ABSTIME)) return -EINVAL;
    return sleep_common(p, static_cast<clockid_t>(a.a[0]), static_cast<int>(a.a[1]), a.a[2], a.a[3]);
}

}  // namespace vessel::thin
