// Helpers the file and descriptor families (sys_rw.cc, sys_stat.cc,
// sys_path.cc, sys_fd.cc, sys_poll.cc, sys_events.cc, sys_socket.cc,
// sys_time.cc) share.
//
// Rule: a guest path is first resolved to a host descriptor inside the
// sandbox (Sandbox::open/open_path/open_parent, all RESOLVE_IN_ROOT), and the
// operation is then applied to that descriptor (AT_EMPTY_PATH) or to a single
// name in a pinned parent directory. No host call ever follows a
// guest-controlled symlink on its own.
#pragma once

#include <time.h>

#include <cerrno>
#include <cstdint>
#include <optional>

#include "base/fd.h"
#include "thin/process.h"

namespace vessel::thin {

// The most one read, write, send or receive moves, like Linux's MAX_RW_COUNT.
inline constexpr uint64_t kMaxIo = 1ull << 30;

// A timespec a guest passed as a duration or deadline: no negative part,
// nanoseconds below a second (else the calls answer -EINVAL).
inline bool valid_timespec(const timespec& ts) { return ts.tv_sec >= 0 && ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000; }

// The timeout argument of ppoll, pselect6 and epoll_pwait2: a guest
// timespec, or none (NULL: wait for ever). -EFAULT or -EINVAL as Linux.
inline int64_t read_timeout(Process& p, uint64_t ptr, std::optional<timespec>& out) {
    if (!ptr) return 0;
    timespec ts;
    if (!p.mem().read_obj(ptr, ts)) return -EFAULT;
    if (!valid_timespec(ts)) return -EINVAL;
    out = ts;
    return 0;
}

// The open file behind a guest descriptor (the full register: values above
// INT32_MAX are no descriptor), or nullptr.
inline OpenFile* file_of(Process& p, uint64_t fd) {
    if (fd > INT32_MAX) return nullptr;
    auto* e = p.fds().get(static_cast<int>(fd));
    return e ? e->file.get() : nullptr;
}

// A host descriptor for (dirfd, path): the file itself (O_PATH), or the
// descriptor's own file for AT_EMPTY_PATH. `holder` keeps a fresh one open.
int64_t resolve(Process& p, int dirfd, uint64_t path_ptr, int flags, Fd& holder, int& host_fd);
// The same for a path already read with Process::read_path ("" for an empty
// one under AT_EMPTY_PATH).
int64_t resolve_path(Process& p, int dirfd, std::string path, int flags, Fd& holder, int& host_fd);

// The signal-mask argument of ppoll, pselect6, epoll_pwait and
// epoll_pwait2, checked as Linux does (size 8, readable): into `out`, none
// when `mask` is 0.
inline int64_t read_sigmask_arg(Process& p, uint64_t mask, uint64_t size, std::optional<uint64_t>& out) {
    if (!mask) return 0;
    if (size != 8) return -EINVAL;
    uint64_t m;
    if (!p.mem().read_obj(mask, m)) return -EFAULT;
    out = m;
    return 0;
}

// Runs `wait(at_once)` with the call's signal mask in place, if it gave one
// (Process::begin_masked_wait): `at_once` asks for a look without waiting,
// since a signal the mask lets through is pending; nothing ready then is
// -EINTR. A ready descriptor wins over the signal, as on Linux.
template <class Wait>
int64_t wait_with_sigmask(Process& p, const std::optional<uint64_t>& mask, Wait&& wait) {
    if (!mask) return wait(false);
    const bool at_once = p.begin_masked_wait(*mask);
    int64_t r = wait(at_once);
    if (at_once && r == 0) r = -EINTR;
    return p.end_masked_wait(r);
}

// Two new host descriptors as two guest descriptors (pipe2, socketpair),
// their numbers stored at `out_ptr` (int[2]); on failure nothing stays
// installed.
int64_t install_pair(Process& p, Fd one, Fd two, bool cloexec, uint64_t out_ptr);

}  // namespace vessel::thin
