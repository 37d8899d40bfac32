// A system call's registers, and typed views of them that name each argument.
#pragma once

#include <fcntl.h>

#include <cstdint>

namespace vessel::thin {

// The number and the six argument registers (rdi, rsi, rdx, r10, r8, r9).
struct SyscallArgs {
    uint64_t nr;
    uint64_t a[6];
};

// The views let a handler read `args.fd()` rather than `a.a[0]`: the
// position of each argument is written once, here, next to its name, and
// syscall_table.inc says which view each call reads. An accessor returns
// the register as the handlers have always converted it: descriptors as the
// full register (file_of() and friends reject values above INT32_MAX),
// directory descriptors of the *at calls as int (AT_FDCWD is negative),
// everything else as the raw 64-bit value.
class ArgsView {
public:
    explicit ArgsView(const SyscallArgs& a) : a_(&a) {}

protected:
    uint64_t u(unsigned i) const { return a_->a[i]; }
    int i32(unsigned i) const { return static_cast<int>(a_->a[i]); }

private:
    const SyscallArgs* a_;
};

// --- Files and descriptors (sys_rw.cc, sys_stat.cc, sys_path.cc, sys_fd.cc) ---

// close, fsync, fdatasync, dup, fchdir
struct FdArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
};
// read, write, pread64, pwrite64, getdents64, fstat (buf only)
struct IoArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t buf() const { return u(1); }
    uint64_t count() const { return u(2); }
    int64_t offset() const { return static_cast<int64_t>(u(3)); }
};
// readv, writev
struct IovArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t iov() const { return u(1); }
    uint64_t iovcnt() const { return u(2); }
};
// preadv, pwritev, preadv2, pwritev2 (the offset in one register on x86-64)
struct PosIovArgs : IovArgs {
    using IovArgs::IovArgs;
    int64_t offset() const { return static_cast<int64_t>(u(3)); }
    uint64_t flags() const { return u(5); }  // the *2 calls only
};
// fallocate
struct FallocateArgs : FdArgs {
    using FdArgs::FdArgs;
    int mode() const { return i32(1); }
    int64_t offset() const { return static_cast<int64_t>(u(2)); }
    int64_t len() const { return static_cast<int64_t>(u(3)); }
};
// sendfile
struct SendfileArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t out_fd() const { return u(0); }
    uint64_t in_fd() const { return u(1); }
    uint64_t offset() const { return u(2); }  // a loff_t*, or 0
    uint64_t count() const { return u(3); }
};
// copy_file_range
struct CopyFileRangeArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd_in() const { return u(0); }
    uint64_t off_in() const { return u(1); }  // loff_t*, or 0
    uint64_t fd_out() const { return u(2); }
    uint64_t off_out() const { return u(3); }
    uint64_t len() const { return u(4); }
    uint64_t flags() const { return u(5); }
};
// lseek
struct SeekArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t offset() const { return u(1); }
    uint64_t whence() const { return u(2); }
};
// ftruncate
struct TruncateArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t length() const { return u(1); }
};
// fchmod
struct FdModeArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t mode() const { return u(1); }
};
// fchown
struct FdOwnerArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t uid() const { return u(1); }
    uint64_t gid() const { return u(2); }
};
// fcntl
struct FcntlArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t cmd() const { return u(1); }
    uint64_t arg() const { return u(2); }
};
// flock
struct FlockArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t operation() const { return u(1); }
};
// ioctl
struct IoctlArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t request() const { return u(1); }
    uint64_t arg() const { return u(2); }
};
// dup2, dup3
struct DupArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t oldfd() const { return u(0); }
    uint64_t newfd() const { return u(1); }
    uint64_t flags() const { return u(2); }
};
// pipe, pipe2
struct PipeArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fds() const { return u(0); }
    uint64_t flags() const { return u(1); }
};
// getcwd
struct GetcwdArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t buf() const { return u(0); }
    uint64_t size() const { return u(1); }
};

// Path calls. The plain forms (open, stat, ...) name a path relative to the
// cwd; the *at forms put a directory descriptor first.

// chdir, unlink, rmdir
struct PathArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t path() const { return u(0); }
};
// access, mkdir, chmod, creat
struct PathModeArgs : PathArgs {
    using PathArgs::PathArgs;
    uint64_t mode() const { return u(1); }
};
// The *at forms: (dirfd, path, ...).
struct AtPathArgs : ArgsView {
    using ArgsView::ArgsView;
    int dirfd() const { return i32(0); }
    uint64_t path() const { return u(1); }
};
// faccessat, faccessat2, mkdirat, fchmodat
struct AtPathModeArgs : AtPathArgs {
    using AtPathArgs::AtPathArgs;
    uint64_t mode() const { return u(2); }
    uint64_t flags() const { return u(3); }
};
// unlinkat
struct AtPathFlagsArgs : AtPathArgs {
    using AtPathArgs::AtPathArgs;
    uint64_t flags() const { return u(2); }
};
// open
struct OpenArgs : PathArgs {
    using PathArgs::PathArgs;
    uint64_t flags() const { return u(1); }
    uint64_t mode() const { return u(2); }
};
// openat
struct OpenatArgs : AtPathArgs {
    using AtPathArgs::AtPathArgs;
    uint64_t flags() const { return u(2); }
    uint64_t mode() const { return u(3); }
};
// stat, lstat
struct StatArgs : PathArgs {
    using PathArgs::PathArgs;
    uint64_t buf() const { return u(1); }
};
// newfstatat
struct FstatatArgs : AtPathArgs {
    using AtPathArgs::AtPathArgs;
    uint64_t buf() const { return u(2); }
    uint64_t flags() const { return u(3); }
};
// statx
struct StatxArgs : AtPathArgs {
    using AtPathArgs::AtPathArgs;
    uint64_t flags() const { return u(2); }
    uint64_t mask() const { return u(3); }
    uint64_t buf() const { return u(4); }
};
// readlink
struct ReadlinkArgs : PathArgs {
    using PathArgs::PathArgs;
    uint64_t buf() const { return u(1); }
    uint64_t size() const { return u(2); }
};
// readlinkat
struct ReadlinkatArgs : AtPathArgs {
    using AtPathArgs::AtPathArgs;
    uint64_t buf() const { return u(2); }
    uint64_t size() const { return u(3); }
};
// rename
struct RenameArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t oldpath() const { return u(0); }
    uint64_t newpath() const { return u(1); }
};
// renameat, renameat2
struct RenameatArgs : ArgsView {
    using ArgsView::ArgsView;
    int olddirfd() const { return i32(0); }
    uint64_t oldpath() const { return u(1); }
    int newdirfd() const { return i32(2); }
    uint64_t newpath() const { return u(3); }
    uint64_t flags() const { return u(4); }
};
// link and linkat: the two-path layouts of rename and renameat
using LinkArgs = RenameArgs;
using LinkatArgs = RenameatArgs;
// symlink
struct SymlinkArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t target() const { return u(0); }
    uint64_t linkpath() const { return u(1); }
};
// symlinkat
struct SymlinkatArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t target() const { return u(0); }
    int newdirfd() const { return i32(1); }
    uint64_t linkpath() const { return u(2); }
};
// chown, lchown
struct ChownArgs : PathArgs {
    using PathArgs::PathArgs;
    uint64_t uid() const { return u(1); }
    uint64_t gid() const { return u(2); }
};
// fchownat
struct FchownatArgs : AtPathArgs {
    using AtPathArgs::AtPathArgs;
    uint64_t uid() const { return u(2); }
    uint64_t gid() const { return u(3); }
    uint64_t flags() const { return u(4); }
};
// utimensat: with a NULL path (futimens) the first argument is a plain
// getxattr, lgetxattr, setxattr, lsetxattr, listxattr, llistxattr,
// removexattr, lremovexattr (listxattr: `name` is the list buffer)
struct XattrPathArgs : PathArgs {
    using PathArgs::PathArgs;
    uint64_t name() const { return u(1); }
};
// fgetxattr, fsetxattr, flistxattr, fremovexattr
struct XattrFdArgs : FdArgs {
    using FdArgs::FdArgs;
    uint64_t name() const { return u(1); }
};
// descriptor, hence both fd() and dirfd().
struct UtimensatArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
    int dirfd() const { return i32(0); }
    uint64_t path() const { return u(1); }
    uint64_t times() const { return u(2); }
    uint64_t flags() const { return u(3); }
};

// --- Memory (sys_memory.cc) ---

// brk
struct BrkArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t addr() const { return u(0); }
};
// mmap
struct MmapArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t addr() const { return u(0); }
    uint64_t length() const { return u(1); }
    uint64_t prot() const { return u(2); }
    uint64_t flags() const { return u(3); }
    int fd() const { return i32(4); }
    uint64_t offset() const { return u(5); }
};
// munmap
struct MunmapArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t addr() const { return u(0); }
    uint64_t length() const { return u(1); }
};
// mprotect
struct MprotectArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t addr() const { return u(0); }
    uint64_t length() const { return u(1); }
    uint64_t prot() const { return u(2); }
};
// mremap
struct MremapArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t old_addr() const { return u(0); }
    uint64_t old_size() const { return u(1); }
    uint64_t new_size() const { return u(2); }
    uint64_t flags() const { return u(3); }
    uint64_t new_addr() const { return u(4); }
};
// fadvise64
struct FadviseArgs : FdArgs {
    using FdArgs::FdArgs;
    int64_t offset() const { return static_cast<int64_t>(u(1)); }
    int64_t length() const { return static_cast<int64_t>(u(2)); }
    uint64_t advice() const { return u(3); }
};
// madvise
struct MadviseArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t addr() const { return u(0); }
    uint64_t length() const { return u(1); }
    uint64_t advice() const { return u(2); }
};

// --- Time (sys_time.cc) ---

// clock_gettime, clock_getres
struct ClockArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t clock() const { return u(0); }
    uint64_t ts() const { return u(1); }
};
// gettimeofday
struct GettimeofdayArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t tv() const { return u(0); }
    uint64_t tz() const { return u(1); }
};
// time
struct TimeArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t tloc() const { return u(0); }
};
// nanosleep
struct NanosleepArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t req() const { return u(0); }
    uint64_t rem() const { return u(1); }
};
// clock_nanosleep
struct ClockNanosleepArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t clock() const { return u(0); }
    uint64_t flags() const { return u(1); }
    uint64_t req() const { return u(2); }
    uint64_t rem() const { return u(3); }
};

// --- Process, identity, signals, limits (sys_process.cc) ---

// getpid, gettid, getppid, getuid, geteuid, getgid, getegid, sched_yield
struct NoArgs : ArgsView {
    using ArgsView::ArgsView;
};
// exit, exit_group
struct ExitArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t status() const { return u(0); }
};
// set_tid_address
struct SetTidAddressArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t tidptr() const { return u(0); }
};
// set_robust_list
struct SetRobustListArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t head() const { return u(0); }
    uint64_t len() const { return u(1); }
};
// arch_prctl
struct ArchPrctlArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t code() const { return u(0); }
    uint64_t addr() const { return u(1); }
};
// prctl
struct PrctlArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t option() const { return u(0); }
    uint64_t arg2() const { return u(1); }
    // arg3..arg5, which most options require to be zero.
    bool rest_zero(unsigned from = 2) const {
        for (unsigned i = from; i < 5; ++i)
            if (u(i)) return false;
        return true;
    }
};
// kill, tkill (target = the tid)
struct KillArgs : ArgsView {
    using ArgsView::ArgsView;
    int64_t target() const { return static_cast<int32_t>(u(0)); }
    uint64_t signum() const { return u(1); }
};
// tgkill
struct TgkillArgs : ArgsView {
    using ArgsView::ArgsView;
    int64_t tgid() const { return static_cast<int32_t>(u(0)); }
    int64_t tid() const { return static_cast<int32_t>(u(1)); }
    uint64_t signum() const { return u(2); }
};
// rt_sigaction
struct SigactionArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t signum() const { return u(0); }
    uint64_t act() const { return u(1); }
    uint64_t oldact() const { return u(2); }
    uint64_t sigsetsize() const { return u(3); }
};
// rt_sigprocmask
struct SigprocmaskArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t how() const { return u(0); }
    uint64_t set() const { return u(1); }
    uint64_t oldset() const { return u(2); }
    uint64_t sigsetsize() const { return u(3); }
};
// rt_sigsuspend, rt_sigpending
struct SigsetArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t set() const { return u(0); }
    uint64_t sigsetsize() const { return u(1); }
};
// rt_sigtimedwait
struct SigtimedwaitArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t set() const { return u(0); }
    uint64_t info() const { return u(1); }
    uint64_t timeout() const { return u(2); }
    uint64_t sigsetsize() const { return u(3); }
};
// alarm
struct AlarmArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t seconds() const { return u(0); }
};
// getitimer, setitimer
struct ItimerArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t which() const { return u(0); }
    uint64_t value() const { return u(1); }      // getitimer: where to store; setitimer: the new value
    uint64_t old_value() const { return u(2); }  // setitimer only
};
// sigaltstack
struct SigaltstackArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t ss() const { return u(0); }
    uint64_t old_ss() const { return u(1); }
};
// uname
struct UnameArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t buf() const { return u(0); }
};
// prlimit64
struct Prlimit64Args : ArgsView {
    using ArgsView::ArgsView;
    uint64_t pid() const { return u(0); }
    uint64_t resource() const { return u(1); }
    uint64_t new_limit() const { return u(2); }
    uint64_t old_limit() const { return u(3); }
};
// getrlimit
struct GetrlimitArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t resource() const { return u(0); }
    uint64_t rlim() const { return u(1); }
};
// execve
struct ExecveArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t path() const { return u(0); }
    uint64_t argv() const { return u(1); }
    uint64_t envp() const { return u(2); }
};
// execveat
struct ExecveatArgs : ArgsView {
    using ArgsView::ArgsView;
    int dirfd() const { return i32(0); }
    uint64_t path() const { return u(1); }
    uint64_t argv() const { return u(2); }
    uint64_t envp() const { return u(3); }
    uint64_t flags() const { return u(4); }
};
// getpriority, setpriority
struct PriorityArgs : ArgsView {
    using ArgsView::ArgsView;
    int which() const { return i32(0); }
    int64_t who() const { return static_cast<int32_t>(u(1)); }
    int value() const { return i32(2); }  // setpriority and ioprio_set only
};
// setpgid
struct SetpgidArgs : ArgsView {
    using ArgsView::ArgsView;
    int64_t pid() const { return static_cast<int32_t>(u(0)); }
    int64_t pgid() const { return static_cast<int32_t>(u(1)); }
};
// getpgid, getsid
struct PidArgs : ArgsView {
    using ArgsView::ArgsView;
    int64_t pid() const { return static_cast<int32_t>(u(0)); }
};
// getrusage
struct GetrusageArgs : ArgsView {
    using ArgsView::ArgsView;
    int64_t who() const { return static_cast<int32_t>(u(0)); }
    uint64_t usage() const { return u(1); }
};
// times
struct TimesArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t buf() const { return u(0); }
};
// wait4
struct Wait4Args : ArgsView {
    using ArgsView::ArgsView;
    int64_t pid() const { return static_cast<int32_t>(u(0)); }
    uint64_t status() const { return u(1); }
    uint64_t options() const { return u(2); }
    uint64_t rusage() const { return u(3); }
};
// clone
struct CloneArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t flags() const { return u(0); }
    uint64_t stack() const { return u(1); }
    uint64_t parent_tid() const { return u(2); }
    uint64_t child_tid() const { return u(3); }
    uint64_t tls() const { return u(4); }
};
// clone3
struct Clone3Args : ArgsView {
    using ArgsView::ArgsView;
    uint64_t uargs() const { return u(0); }
    uint64_t size() const { return u(1); }
};
// waitid
struct WaitidArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t idtype() const { return u(0); }
    uint64_t id() const { return u(1); }
    uint64_t infop() const { return u(2); }
    uint64_t options() const { return u(3); }
    uint64_t rusage() const { return u(4); }
};
// getcpu
struct GetcpuArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t cpu() const { return u(0); }
    uint64_t node() const { return u(1); }
};
// sched_getaffinity, sched_setaffinity
struct SchedGetaffinityArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t pid() const { return u(0); }
    uint64_t cpusetsize() const { return u(1); }
    uint64_t mask() const { return u(2); }
};
// futex
struct FutexArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t uaddr() const { return u(0); }
    uint64_t op() const { return u(1); }
    uint64_t val() const { return u(2); }
    uint64_t timeout() const { return u(3); }
};
// umask
struct UmaskArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t mask() const { return u(0); }
};
// getrandom
struct GetrandomArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t buf() const { return u(0); }
    uint64_t count() const { return u(1); }
    uint64_t flags() const { return u(2); }
};
// sysinfo
struct SysinfoArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t info() const { return u(0); }
};

// getgroups, setgroups
// setuid, setgid; setreuid, setregid; setresuid, setresgid (-1: unchanged)
struct IdsArgs : ArgsView {
    using ArgsView::ArgsView;
    uint32_t id(unsigned i) const { return static_cast<uint32_t>(u(i)); }
};
// getresuid, getresgid
struct IdPointersArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t ptr(unsigned i) const { return u(i); }
};
struct GroupsArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t size() const { return u(0); }
    uint64_t list() const { return u(1); }
};

// --- Waiting for descriptors (sys_poll.cc) ---

// poll
struct PollArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fds() const { return u(0); }
    uint64_t nfds() const { return u(1); }
    int timeout() const { return i32(2); }  // milliseconds; negative: for ever
};
// ppoll
struct PpollArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fds() const { return u(0); }
    uint64_t nfds() const { return u(1); }
    uint64_t tsp() const { return u(2); }
    uint64_t mask() const { return u(3); }
    uint64_t sigsetsize() const { return u(4); }
};
// select
struct SelectArgs : ArgsView {
    using ArgsView::ArgsView;
    int nfds() const { return i32(0); }
    uint64_t readfds() const { return u(1); }
    uint64_t writefds() const { return u(2); }
    uint64_t exceptfds() const { return u(3); }
    uint64_t timeout() const { return u(4); }  // struct timeval*
};
// pselect6
struct Pselect6Args : SelectArgs {
    using SelectArgs::SelectArgs;
    uint64_t tsp() const { return u(4); }  // struct timespec*
    uint64_t sig() const { return u(5); }  // {sigset_t*, size_t}
};

// --- Event descriptors (sys_events.cc) ---

// epoll_create1
struct EpollCreate1Args : ArgsView {
    using ArgsView::ArgsView;
    uint64_t flags() const { return u(0); }
};
// epoll_create
struct EpollCreateArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t size() const { return u(0); }
};
// epoll_ctl
struct EpollCtlArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t epfd() const { return u(0); }
    uint64_t op() const { return u(1); }
    uint64_t fd() const { return u(2); }
    uint64_t event() const { return u(3); }
};
// epoll_wait, epoll_pwait, epoll_pwait2
struct EpollWaitArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t epfd() const { return u(0); }
    uint64_t events() const { return u(1); }
    uint64_t maxevents() const { return u(2); }
    int timeout() const { return i32(3); }         // milliseconds (epoll_wait, epoll_pwait)
    uint64_t timeout_ptr() const { return u(3); }  // struct timespec* (epoll_pwait2)
    uint64_t mask() const { return u(4); }
    uint64_t sigsetsize() const { return u(5); }
};
// eventfd, eventfd2
struct Eventfd2Args : ArgsView {
    using ArgsView::ArgsView;
    uint64_t initval() const { return u(0); }
    uint64_t flags() const { return u(1); }
};
// signalfd, signalfd4
struct SignalfdArgs : ArgsView {
    using ArgsView::ArgsView;
    int fd() const { return i32(0); }
    uint64_t mask() const { return u(1); }
    uint64_t sizemask() const { return u(2); }
    uint64_t flags() const { return u(3); }
};
// timerfd_create
struct TimerfdCreateArgs : ArgsView {
    using ArgsView::ArgsView;
    int clockid() const { return i32(0); }
    uint64_t flags() const { return u(1); }
};
// timerfd_settime
struct TimerfdSettimeArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
    uint64_t flags() const { return u(1); }
    uint64_t new_value() const { return u(2); }
    uint64_t old_value() const { return u(3); }
};
// timerfd_gettime
struct TimerfdGettimeArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
    uint64_t curr_value() const { return u(1); }
};

// --- Sockets (sys_socket.cc) ---

// socketpair
struct SocketpairArgs : ArgsView {
    using ArgsView::ArgsView;
    int domain() const { return i32(0); }
    uint64_t type() const { return u(1); }
    uint64_t protocol() const { return u(2); }
    uint64_t sv() const { return u(3); }
};
// shutdown
struct ShutdownArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
    uint64_t how() const { return u(1); }
};
// sendto, recvfrom
struct SendtoArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
    uint64_t buf() const { return u(1); }
    uint64_t len() const { return u(2); }
    uint64_t flags() const { return u(3); }
    uint64_t addr() const { return u(4); }
    uint64_t addrlen() const { return u(5); }  // a value for sendto, a pointer for recvfrom
};
// sendmsg, recvmsg
struct MsgArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
    uint64_t msg() const { return u(1); }
    uint64_t flags() const { return u(2); }
};
// getsockname, getpeername
struct NameArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
    uint64_t addr() const { return u(1); }
    uint64_t addrlen() const { return u(2); }
};
// getsockopt, setsockopt
struct SockoptArgs : ArgsView {
    using ArgsView::ArgsView;
    uint64_t fd() const { return u(0); }
    int level() const { return i32(1); }
    int name() const { return i32(2); }
    uint64_t optval() const { return u(3); }
    uint64_t optlen() const { return u(4); }  // a value for setsockopt, a pointer for getsockopt
};

}  // namespace vessel::thin
