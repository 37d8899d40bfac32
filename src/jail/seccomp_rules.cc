#include "jail/seccomp_rules.h"

#include <linux/seccomp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <span>

namespace vessel::jail {
namespace {

// What a running thin VMM calls, by name (names this libseccomp or kernel
// does not know are skipped). Kept in groups; tests/integration checks the
// whole suite under the filter.
// Grouped by family, several names a line: kept out of clang-format.
// clang-format off
constexpr const char* kAllowed[] = {
    // descriptors and file data
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "lseek", "close", "close_range", "fcntl", "dup", "dup2", "dup3", "pipe", "pipe2", "ioctl", "sendfile",
    "copy_file_range", "fsync", "fdatasync", "ftruncate", "fallocate", "flock",
    // the file system, always relative to descriptors the sandbox opened
    "openat", "openat2", "open", "fstat", "newfstatat", "stat", "lstat", "statx", "fstatfs", "statfs",
    "getdents64", "readlinkat", "readlink", "faccessat", "faccessat2", "access", "mkdirat", "mkdir",
    "unlinkat", "unlink", "rmdir", "renameat", "renameat2", "rename", "linkat", "symlinkat", "fchmod",
    "fchmodat", "fchmodat2", "fchown", "fchownat", "utimensat", "umask", "getcwd",
    // memory
    "mmap", "munmap", "mprotect", "mremap", "madvise", "brk", "mincore", "memfd_create", "msync",
    // threads, signals, exit
    "futex", "set_robust_list", "get_robust_list", "rseq", "set_tid_address", "sched_yield",
    "sched_getaffinity", "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "tgkill",
    "tkill", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "sigaltstack", "exit",
    "alarm", "getitimer", "setitimer",  // a guest's ITIMER_REAL is the VMM's (thin/sys_time.cc)
    "exit_group", "arch_prctl",
    // time, randomness, identity
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time", "getrandom",
    "uname", "sysinfo", "prlimit64", "getrlimit", "getrusage", "times",
    // waiting, and the control API's connections (its socket exists already)
    "poll", "ppoll", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2",
    "timerfd_create", "timerfd_settime", "timerfd_gettime", "accept4",
    "accept", "recvfrom", "sendto", "recvmsg", "sendmsg", "shutdown", "getsockopt", "setsockopt",
    "getsockname", "getpeername",
};

// What a full machine's vCPU thread calls while it runs: KVM_RUN and the
// vCPU ioctls, the devices' register handlers (console writes, eventfd
// signals; a virtio device activated by the guest registers its eventfds
// with the I/O loop and may make a rate limiter's timerfd), allocations,
// the kick signal's return, and its own end.
constexpr const char* kVcpuThread[] = {
    "ioctl", "read", "write", "readv", "writev", "close", "fcntl", "epoll_ctl", "eventfd2",
    "timerfd_create", "timerfd_settime", "timerfd_gettime",
    "mmap", "munmap", "mremap", "mprotect", "madvise", "brk",
    "futex", "sched_yield", "rt_sigreturn", "rt_sigprocmask", "restart_syscall", "getpid", "gettid", "tgkill",
    "clock_gettime", "clock_nanosleep", "nanosleep", "getrandom", "exit",
    // The sanitizers' runtime (the ASan+UBSan build): UBSan's vptr check
    // tests memory with a pipe, ASan's threads keep an alternate signal
    // stack. Harmless: a pipe of the thread's own, its own signal stack.
    "pipe", "pipe2", "sigaltstack",
};

// What a full machine's I/O thread calls: the devices' back-ends on
// descriptors they already hold (a disk's preads and pwrites, flushes and
// discards; TAP reads and writes; the console's input; eventfds and
// timerfds), vsock's AF_UNIX connections, the virtio-rng's randomness, and
// its loop.
constexpr const char* kIoThread[] = {
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "fdatasync", "fsync", "fallocate", "close", "fcntl", "ioctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "poll", "ppoll", "eventfd2",
    "timerfd_create", "timerfd_settime", "timerfd_gettime",
    "accept4", "accept", "connect", "recvfrom", "sendto", "recvmsg", "sendmsg", "shutdown", "getsockopt",
    "setsockopt", "getsockname", "getpeername", "getrandom",
    "mmap", "munmap", "mremap", "mprotect", "madvise", "brk",
    "futex", "sched_yield", "rt_sigreturn", "rt_sigprocmask", "restart_syscall", "getpid", "gettid", "tgkill",
    "clock_gettime", "clock_nanosleep", "nanosleep", "exit",
    "pipe", "pipe2", "sigaltstack",  // the sanitizers' runtime, as for vCPU threads
};
// clang-format on

bool allow_all(scmp_filter_ctx ctx, std::span<const char* const> names) {
    for (const char* name : names) {
        int nr = seccomp_syscall_resolve_name(name);
        if (nr == __NR_SCMP_ERROR) continue;  // unknown to this libseccomp: nothing to allow
        if (int r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0); r != 0 && r != -EEXIST) return false;
    }
    return true;
}

}  // namespace

bool add_tty_rules(scmp_filter_ctx ctx) {
    // The command is an unsigned int: compare its low 32 bits only.
    for (unsigned long cmd : {TIOCSTI, TIOCLINUX})
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, cmd)) != 0)
            return false;
    return true;
}

bool add_allowlist_rules(scmp_filter_ctx ctx) {
    if (!allow_all(ctx, kAllowed)) return false;
    // Threads and the detached teardown share the address space; nothing
    // else may be cloned (no fork). clone3 passes its flags in memory,
    // where a filter cannot look: make libc fall back to clone.
    // No namespace flag either: a new user namespace would hand a
    // subverted VMM every capability again, over namespaces of its own.
    constexpr uint64_t kChecked = CLONE_VM | CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                  CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
    // A guest's socket pairs (thin/sys_socket.cc): AF_UNIX only, no socket().
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0)) != 0)
        return false;
    // A jailed VMM that has announced its exit outlives the jail's parent
    // (jail::announce_exit): it clears its parent-death signal, and only that.
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 2, SCMP_A0(SCMP_CMP_EQ, PR_SET_PDEATHSIG, 0),
                         SCMP_A1(SCMP_CMP_EQ, 0, 0)) != 0)
        return false;
    // Threads started once confined (a full machine's vCPUs and I/O thread)
    // name themselves ("vcpu0"): a thread's own comm, nothing else.
    if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME, 0)) != 0)
        return false;
    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, kChecked, CLONE_VM)) ==
               0 &&
           seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) == 0;
}

bool add_full_allowlist_rules(scmp_filter_ctx ctx) {
    // A vsock device reaches host listeners (and serves its own) over
    // AF_UNIX stream sockets; no other family.
    // A vCPU thread stacks its own, narrower filter once running: a filter
    // on the calling thread only (no flags), which can only restrict it.
    return add_allowlist_rules(ctx) &&
           seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0)) == 0 &&
           seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(seccomp), 2, SCMP_A0(SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER, 0),
                            SCMP_A1(SCMP_CMP_EQ, 0, 0)) == 0 &&
           seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(connect), 0) == 0;
}

bool add_vcpu_thread_rules(scmp_filter_ctx ctx) { return allow_all(ctx, kVcpuThread); }

bool add_io_thread_rules(scmp_filter_ctx ctx) {
    return allow_all(ctx, kIoThread) &&
           seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX, 0)) == 0;
}

}  // namespace vessel::jail
