// Clocks and sleeps, answered from the host's clocks. CLOCK_REALTIME and
// CLOCK_MONOTONIC (and gettimeofday and time) come from the clock the
// guest-side entry shares once it is calibrated (Process::clock_ns), so a
// value served here never disagrees with one the guest computed itself.
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#include <algorithm>
#include <atomic>

#include "thin/process.h"
#include "thin/sys_files.h"
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

int64_t sys_clock_gettime(Process& p, ClockArgs a) {
    if (!clock_ok(a.clock())) return -EINVAL;
    timespec ts;
    if (int r = host_or_shared(p, static_cast<clockid_t>(a.clock()), ts); r < 0) return r;
    return p.mem().write_obj(a.ts(), ts) ? 0 : -EFAULT;
}

int64_t sys_clock_getres(Process& p, ClockArgs a) {
    if (!clock_ok(a.clock())) return -EINVAL;
    timespec ts;
    if (::clock_getres(static_cast<clockid_t>(a.clock()), &ts) < 0) return -errno;
    return !a.ts() || p.mem().write_obj(a.ts(), ts) ? 0 : -EFAULT;
}

int64_t sys_gettimeofday(Process& p, GettimeofdayArgs a) {
    timespec ts;
    (void)host_or_shared(p, CLOCK_REALTIME, ts);
    timeval tv{ts.tv_sec, ts.tv_nsec / 1000};
    if (a.tv() && !p.mem().write_obj(a.tv(), tv)) return -EFAULT;
    if (a.tz()) {
        struct timezone tz {};
        if (!p.mem().write_obj(a.tz(), tz)) return -EFAULT;
    }
    return 0;
}

int64_t sys_time(Process& p, TimeArgs a) {
    timespec ts;
    (void)host_or_shared(p, CLOCK_REALTIME, ts);
    int64_t t = ts.tv_sec;
    if (a.tloc() && !p.mem().write_obj(a.tloc(), t)) return -EFAULT;
    return t;
}

namespace {

int64_t sleep_common(Process& p, clockid_t clock, int flags, uint64_t req_ptr, uint64_t rem_ptr) {
    timespec req, rem{};
    if (!p.mem().read_obj(req_ptr, req)) return -EFAULT;
    if (!valid_timespec(req)) return -EINVAL;
    int r = ::clock_nanosleep(clock, flags, &req, &rem);
    if (r == EINTR && rem_ptr && !(flags & TIMER_ABSTIME)) p.mem().write_obj(rem_ptr, rem);
    return -r;
}

}  // namespace

int64_t sys_nanosleep(Process& p, NanosleepArgs a) { return sleep_common(p, CLOCK_MONOTONIC, 0, a.req(), a.rem()); }

int64_t sys_clock_nanosleep(Process& p, ClockNanosleepArgs a) {
    if (!clock_ok(a.clock()) || a.clock() == CLOCK_THREAD_CPUTIME_ID) return -EINVAL;
    if (a.flags() & ~uint64_t(TIMER_ABSTIME)) return -EINVAL;
    return sleep_common(p, static_cast<clockid_t>(a.clock()), static_cast<int>(a.flags()), a.req(), a.rem());
}

// ITIMER_REAL is the VMM's own: its SIGALRM is forwarded to the guest like
// any signal from outside (machine/thin_vm.cc), to the process that armed
// it last (timer_owner). One timer per VMM process, so per VM.
namespace {
std::atomic<int64_t> g_timer_owner{kGuestPid};
}  // namespace

int64_t timer_owner() { return g_timer_owner.load(std::memory_order_relaxed); }

int64_t sys_alarm(Process& p, AlarmArgs a) {
    if (a.seconds()) g_timer_owner = p.pid();
    return ::alarm(static_cast<unsigned>(std::min<uint64_t>(a.seconds(), UINT32_MAX)));
}

int64_t sys_getitimer(Process& p, ItimerArgs a) {
    if (a.which() != ITIMER_REAL) return a.which() <= ITIMER_PROF ? -EOPNOTSUPP : -EINVAL;
    itimerval v{};
    ::getitimer(ITIMER_REAL, &v);
    return p.mem().write_obj(a.value(), v) ? 0 : -EFAULT;
}

int64_t sys_setitimer(Process& p, ItimerArgs a) {
    if (a.which() != ITIMER_REAL) return a.which() <= ITIMER_PROF ? -EOPNOTSUPP : -EINVAL;
    itimerval v{}, old{};
    if (a.value() && !p.mem().read_obj(a.value(), v)) return -EFAULT;  // NULL: disarm, as Linux
    auto bad = [](const timeval& t) { return t.tv_sec < 0 || t.tv_usec < 0 || t.tv_usec >= 1000000; };
    if (bad(v.it_value) || bad(v.it_interval)) return -EINVAL;
    if (v.it_value.tv_sec || v.it_value.tv_usec) g_timer_owner = p.pid();
    if (::setitimer(ITIMER_REAL, &v, &old) != 0) return -errno;
    return !a.old_value() || p.mem().write_obj(a.old_value(), old) ? 0 : -EFAULT;
}

}  // namespace vessel::thin
