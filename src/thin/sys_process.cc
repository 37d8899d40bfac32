// Process, identity, signal-state, limit and system-information calls.
#include <linux/futex.h>
#include <sched.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string>

#include "thin/process.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

constexpr uint64_t ARCH_SET_GS = 0x1001, ARCH_SET_FS = 0x1002, ARCH_GET_FS = 0x1003, ARCH_GET_GS = 0x1004;

}  // namespace

int64_t sys_exit(Process& p, ExitArgs a) {
    p.exit(static_cast<int>(a.status()));
    return 0;
}

int64_t sys_getpid(Process& p, NoArgs) { return p.pid(); }
int64_t sys_getppid(Process& p, NoArgs) { return p.tree() ? p.tree()->parent(p) : 0; }
int64_t sys_getuid(Process& p, NoArgs) { return p.options().uid; }

// The guest has no supplementary groups.
int64_t sys_getgroups(Process&, GroupsArgs a) { return static_cast<int>(a.size()) < 0 ? -EINVAL : 0; }

// Dropping every supplementary group, as a daemon starting as root does,
// is allowed to uid 0 (which already has none); setting any is refused as
// if the guest lacked CAP_SETGID.
int64_t sys_setgroups(Process& p, GroupsArgs a) {
    if (a.size() > 65536) return -EINVAL;  // NGROUPS_MAX
    if (p.options().uid != 0 || a.size() != 0) return -EPERM;
    return 0;
}
int64_t sys_getgid(Process& p, NoArgs) { return p.options().gid; }

// The guest's credentials are one uid and one gid per process (real,
// effective and saved alike). A change to itself always succeeds; to
// anything else only as uid 0, and only when the ids given agree (the model
// cannot hold a real and an effective id that differ). -1 leaves one as is.
int64_t set_ids(Process& p, const IdsArgs& a, unsigned count, bool gid) {
    constexpr uint32_t kUnchanged = UINT32_MAX;
    const uint32_t now = gid ? p.options().gid : p.options().uid;
    std::optional<uint32_t> want;
    for (unsigned i = 0; i < count; ++i) {
        const uint32_t id = a.id(i);
        if (id == kUnchanged) continue;
        if (want && *want != id) return p.options().uid == 0 ? -EINVAL : -EPERM;
        want = id;
    }
    if (!want || *want == now) return 0;
    if (p.options().uid != 0) return -EPERM;  // as without CAP_SETUID/CAP_SETGID
    p.set_credentials(gid ? p.options().uid : *want, gid ? *want : p.options().gid);
    return 0;
}

int64_t sys_setuid(Process& p, IdsArgs a) { return set_ids(p, a, 1, false); }
int64_t sys_setgid(Process& p, IdsArgs a) { return set_ids(p, a, 1, true); }
int64_t sys_setreuid(Process& p, IdsArgs a) { return set_ids(p, a, 2, false); }
int64_t sys_setregid(Process& p, IdsArgs a) { return set_ids(p, a, 2, true); }
int64_t sys_setresuid(Process& p, IdsArgs a) { return set_ids(p, a, 3, false); }
int64_t sys_setresgid(Process& p, IdsArgs a) { return set_ids(p, a, 3, true); }

int64_t get_ids(Process& p, const IdPointersArgs& a, uint32_t id) {
    for (unsigned i = 0; i < 3; ++i)
        if (!p.mem().write_obj(a.ptr(i), id)) return -EFAULT;
    return 0;
}

int64_t sys_getresuid(Process& p, IdPointersArgs a) { return get_ids(p, a, p.options().uid); }
int64_t sys_getresgid(Process& p, IdPointersArgs a) { return get_ids(p, a, p.options().gid); }

int64_t sys_set_tid_address(Process& p, SetTidAddressArgs a) {
    p.set_clear_child_tid(a.tidptr());
    return p.pid();
}

int64_t sys_set_robust_list(Process&, SetRobustListArgs a) {
    return a.len() == 24 ? 0 : -EINVAL;  // sizeof(struct robust_list_head)
}

int64_t sys_arch_prctl(Process& p, ArchPrctlArgs a) {
    switch (a.code()) {
        case ARCH_SET_FS:
        case ARCH_SET_GS: {
            if (a.addr() >= (1ull << 47)) return -EPERM;  // non-canonical / kernel half
            bool ok = a.code() == ARCH_SET_FS ? p.cpu().set_fs_base(a.addr()) : p.cpu().set_gs_base(a.addr());
            return ok ? 0 : -EINVAL;
        }
        case ARCH_GET_FS:
        case ARCH_GET_GS: {
            uint64_t v = a.code() == ARCH_GET_FS ? p.cpu().fs_base() : p.cpu().gs_base();
            return p.mem().write_obj(a.addr(), v) ? 0 : -EFAULT;
        }
        default: return -EINVAL;
    }
}

// The options programs and their libraries use. Each is checked as Linux
// checks it (kernel/sys.c); what they set has no effect on a thin guest
// beyond being read back. Anything else answers EINVAL, as Linux does for
// an option it does not know.
int64_t sys_prctl(Process& p, PrctlArgs a) {
    constexpr uint64_t kSetPdeathsig = 1, kGetPdeathsig = 2, kGetDumpable = 3, kSetDumpable = 4, kGetKeepcaps = 7,
                       kSetKeepcaps = 8, kSetName = 15, kGetName = 16, kGetSeccomp = 21, kCapbsetRead = 23,
                       kSetTimerslack = 29, kGetTimerslack = 30, kSetChildSubreaper = 36, kGetChildSubreaper = 37,
                       kSetNoNewPrivs = 38, kGetNoNewPrivs = 39, kGetTidAddress = 40, kSetThpDisable = 41,
                       kGetThpDisable = 42;
    constexpr uint64_t kCapLastCap = 40;  // CAP_CHECKPOINT_RESTORE
    constexpr size_t kTaskCommLen = 16;
    auto& st = p.prctl_state();
    auto put_int = [&](int v) { return p.mem().write_obj(a.arg2(), v) ? 0 : -EFAULT; };
    switch (a.option()) {
        case kSetPdeathsig:
            if (a.arg2() > 64) return -EINVAL;
            st.pdeathsig = static_cast<int>(a.arg2());
            return 0;
        case kGetPdeathsig: return put_int(st.pdeathsig);
        case kGetDumpable: return st.dumpable;
        case kSetDumpable:
            if (a.arg2() > 1) return -EINVAL;  // SUID_DUMP_DISABLE or SUID_DUMP_USER
            st.dumpable = a.arg2();
            return 0;
        case kGetKeepcaps: return st.keepcaps;
        case kSetKeepcaps:
            if (a.arg2() > 1) return -EINVAL;
            st.keepcaps = a.arg2();
            return 0;
        case kSetName: {
            // Like strncpy_from_user of TASK_COMM_LEN - 1 bytes: the name
            // need not end within them, and it is cut there.
            std::string name;
            for (char c; name.size() < kTaskCommLen - 1; name += c) {
                if (!p.mem().read_obj(a.arg2() + name.size(), c)) return -EFAULT;
                if (c == '\0') break;
            }
            p.comm() = std::move(name);
            return 0;
        }
        case kGetName: {
            char buf[kTaskCommLen] = {};
            std::memcpy(buf, p.comm().data(), std::min(p.comm().size(), kTaskCommLen - 1));
            return p.mem().write(a.arg2(), buf, sizeof buf) ? 0 : -EFAULT;
        }
        case kGetSeccomp: return 0;                                      // SECCOMP_MODE_DISABLED
        case kCapbsetRead: return a.arg2() > kCapLastCap ? -EINVAL : 0;  // the guest holds no capability
        case kSetTimerslack:
            st.timerslack_ns = a.arg2() ? a.arg2() : 50000;  // 0: back to the default
            return 0;
        case kGetTimerslack: return static_cast<int64_t>(std::min<uint64_t>(st.timerslack_ns, INT64_MAX));
        case kSetChildSubreaper: st.child_subreaper = a.arg2() != 0; return 0;
        case kGetChildSubreaper: return put_int(st.child_subreaper);
        case kSetNoNewPrivs:
            if (a.arg2() != 1 || !a.rest_zero()) return -EINVAL;
            st.no_new_privs = true;
            return 0;
        case kGetNoNewPrivs: return a.arg2() || !a.rest_zero() ? -EINVAL : st.no_new_privs;
        case kGetTidAddress: return p.mem().write_obj(a.arg2(), p.clear_child_tid()) ? 0 : -EFAULT;
        case kSetThpDisable:
            if (!a.rest_zero()) return -EINVAL;
            st.thp_disable = a.arg2() != 0;
            return 0;
        case kGetThpDisable: return a.arg2() || !a.rest_zero(1) ? -EINVAL : st.thp_disable;
        default: return -EINVAL;
    }
}

// A signal to the caller itself. Signal 0 only checks the target exists.
int64_t send_to_self(Process& p, uint64_t sig, int code) {
    if (sig > 64) return -EINVAL;
    if (sig) p.send_signal(static_cast<int>(sig), code);
    return 0;
}

// The VM's processes are one process group and session, pid 1's.
int64_t sys_kill(Process& p, KillArgs a) {
    const int64_t pid = a.target();
    if (a.signum() > 64) return -EINVAL;
    const int sig = static_cast<int>(a.signum());
    if (pid == p.pid()) return send_to_self(p, a.signum(), SI_USER);
    if (!p.tree()) {
        // A lone process: the group (0, -1 naming group 1) and everyone (-1) are itself.
        if (pid != 0 && pid != -1) return -ESRCH;
        return send_to_self(p, a.signum(), SI_USER);
    }
    // The caller's own group holds the caller (0, or its group's number).
    const bool self_too = pid == 0 || (pid < -1 && -pid == p.tree()->group(p, 0, false));
    const int64_t others = p.tree()->kill(p, pid, sig);
    if (self_too) return send_to_self(p, a.signum(), SI_USER);
    return others;
}

// tkill and tgkill: every process is single-threaded, its tid its pid.
int64_t send_to_thread(Process& p, int64_t tid, uint64_t sig) {
    if (sig > 64) return -EINVAL;
    if (tid == p.pid()) return send_to_self(p, sig, SI_TKILL);
    return p.tree() ? p.tree()->kill(p, tid, static_cast<int>(sig)) : -ESRCH;
}

int64_t sys_tkill(Process& p, KillArgs a) {
    if (a.target() <= 0) return -EINVAL;
    return send_to_thread(p, a.target(), a.signum());
}

int64_t sys_tgkill(Process& p, TgkillArgs a) {
    if (a.tgid() <= 0 || a.tid() <= 0) return -EINVAL;
    if (a.tgid() != a.tid()) return -ESRCH;
    return send_to_thread(p, a.tid(), a.signum());
}

int64_t sys_rt_sigreturn(Process& p, NoArgs) { return p.sigreturn(); }

int64_t sys_pause(Process& p, NoArgs) { return p.suspend(std::nullopt); }

int64_t sys_rt_sigsuspend(Process& p, SigsetArgs a) {
    if (a.sigsetsize() != 8) return -EINVAL;
    uint64_t mask;
    if (!p.mem().read_obj(a.set(), mask)) return -EFAULT;
    return p.suspend(mask);
}

// Takes a pending signal of the set, or waits for one (from outside the VM).
int64_t sys_rt_sigtimedwait(Process& p, SigtimedwaitArgs a) {
    if (a.sigsetsize() != 8) return -EINVAL;
    uint64_t set;
    if (!p.mem().read_obj(a.set(), set)) return -EFAULT;
    std::optional<timespec> timeout;
    if (int64_t r = read_timeout(p, a.timeout(), timeout); r < 0) return r;
    return p.sigtimedwait(set, a.info(), timeout);
}

// The signals waiting because they are blocked.
int64_t sys_rt_sigpending(Process& p, SigsetArgs a) {
    if (a.sigsetsize() > 8) return -EINVAL;
    const uint64_t pending = p.pending_signals() & p.signal_mask();
    return p.mem().write(a.set(), &pending, a.sigsetsize()) ? 0 : -EFAULT;
}

int64_t sys_rt_sigaction(Process& p, SigactionArgs a) {
    int sig = static_cast<int>(a.signum());
    if (sig < 1 || sig > 64 || a.sigsetsize() != 8) return -EINVAL;
    auto& slot = p.sigactions()[sig - 1];
    kernel_sigaction_t old = slot;
    if (a.act()) {
        if (sig == SIGKILL || sig == SIGSTOP) return -EINVAL;
        kernel_sigaction_t act;
        if (!p.mem().read_obj(a.act(), act)) return -EFAULT;
        slot = act;
    }
    if (a.oldact() && !p.mem().write_obj(a.oldact(), old)) return -EFAULT;
    return 0;
}

int64_t sys_rt_sigprocmask(Process& p, SigprocmaskArgs a) {
    if (a.sigsetsize() != 8) return -EINVAL;
    uint64_t old = p.signal_mask();
    if (a.set()) {
        uint64_t set;
        if (!p.mem().read_obj(a.set(), set)) return -EFAULT;
        set &= ~kUnblockable;
        switch (a.how()) {
            case SIG_BLOCK: p.signal_mask() |= set; break;
            case SIG_UNBLOCK: p.signal_mask() &= ~set; break;
            case SIG_SETMASK: p.signal_mask() = set; break;
            default: return -EINVAL;
        }
    }
    if (a.oldset() && !p.mem().write_obj(a.oldset(), old)) return -EFAULT;
    return 0;
}

int64_t sys_sigaltstack(Process& p, SigaltstackArgs a) {
    auto old = p.sigaltstack();
    // On the alternate stack now (a handler runs there): said, and it may not change.
    const bool on_it = p.context() && p.on_sigaltstack(p.context()->regs.rsp);
    if (on_it) old[1] |= SS_ONSTACK;
    if (a.ss()) {
        if (on_it) return -EPERM;
        std::array<uint64_t, 3> ss;  // sp, flags (int + pad), size
        if (!p.mem().read(a.ss(), ss.data(), 24)) return -EFAULT;
        uint32_t flags = static_cast<uint32_t>(ss[1]);
        if (flags & ~(SS_DISABLE | kSsAutoDisarm)) return -EINVAL;
        if (!(flags & SS_DISABLE) && ss[2] < kMinSigStackSize) return -ENOMEM;
        p.sigaltstack() = {ss[0], flags, ss[2], 0};
    }
    if (a.old_ss() && !p.mem().write(a.old_ss(), old.data(), 24)) return -EFAULT;
    return 0;
}

int64_t sys_uname(Process& p, UnameArgs a) {
    struct utsname host;
    ::uname(&host);
    struct utsname u {};
    std::strcpy(u.sysname, "Linux");
    std::strcpy(u.nodename, "vessel");
    std::memcpy(u.release, host.release, sizeof u.release);
    std::memcpy(u.version, host.version, sizeof u.version);
    std::strcpy(u.machine, "x86_64");
    std::strcpy(u.domainname, "(none)");
    return p.mem().write_obj(a.buf(), u) ? 0 : -EFAULT;
}

Rlimit guest_rlimit(unsigned resource) {
    switch (resource) {
        case RLIMIT_STACK: return {8ull << 20, RLIM_INFINITY};
        case RLIMIT_NOFILE: return {FdTable::kMaxFds, FdTable::kMaxFds};
        case RLIMIT_CORE: return {0, RLIM_INFINITY};
        case RLIMIT_NPROC: return {1, 1};
        case RLIMIT_MEMLOCK: return {8ull << 20, 8ull << 20};
        case RLIMIT_SIGPENDING: return {64, 64};
        case RLIMIT_MSGQUEUE: return {819200, 819200};
        default: return {RLIM_INFINITY, RLIM_INFINITY};
    }
}

int64_t sys_prlimit64(Process& p, Prlimit64Args a) {
    if (a.pid() != 0 && static_cast<int64_t>(a.pid()) != kGuestPid) return -ESRCH;
    if (a.resource() >= RLIM_NLIMITS) return -EINVAL;
    Rlimit l = guest_rlimit(static_cast<unsigned>(a.resource()));
    if (a.new_limit()) {
        Rlimit want;
        if (!p.mem().read_obj(a.new_limit(), want)) return -EFAULT;
        if (want.cur > want.max) return -EINVAL;
        if (want.max > l.max) return -EPERM;
        // Accepted but not enforced beyond the VM's own limits.
    }
    if (a.old_limit() && !p.mem().write_obj(a.old_limit(), l)) return -EFAULT;
    return 0;
}

int64_t sys_getrlimit(Process& p, GetrlimitArgs a) {
    if (a.resource() >= RLIM_NLIMITS) return -EINVAL;
    Rlimit l = guest_rlimit(static_cast<unsigned>(a.resource()));
    return p.mem().write_obj(a.rlim(), l) ? 0 : -EFAULT;
}

int64_t sys_sched_yield(Process&, NoArgs) { return 0; }

int64_t sys_sched_getaffinity(Process& p, SchedGetaffinityArgs a) {
    if (a.pid() != 0 && static_cast<int64_t>(a.pid()) != kGuestPid) return -ESRCH;
    if (a.cpusetsize() < 8 || a.cpusetsize() & 7) return -EINVAL;
    uint64_t mask = 1;  // one vCPU
    return p.mem().write_obj(a.mask(), mask) ? 8 : -EFAULT;
}

// Only CPU 0 exists: a mask must hold it (the kernel's "no allowed CPU
// in the mask" is EINVAL); bytes past the VM's CPUs are not looked at.
int64_t sys_sched_setaffinity(Process& p, SchedGetaffinityArgs a) {
    if (a.pid() != 0 && static_cast<int64_t>(a.pid()) != kGuestPid) return -ESRCH;
    if (a.cpusetsize() == 0) return -EINVAL;
    uint8_t first;
    if (!p.mem().read_obj(a.mask(), first)) return -EFAULT;
    return first & 1 ? 0 : -EINVAL;
}

int64_t sys_getcpu(Process& p, GetcpuArgs a) {
    const uint32_t zero = 0;
    if (a.cpu() && !p.mem().write_obj(a.cpu(), zero)) return -EFAULT;
    if (a.node() && !p.mem().write_obj(a.node(), zero)) return -EFAULT;
    return 0;
}

// Process groups and sessions. Pid 1 leads its own group and session (1,
// 1), as a container's first process does; Linux refuses a session leader
// both setpgid and setsid (EPERM), and no other pid exists.
// Process groups and sessions are the tree's; a lone process (tests) leads
// group and session 1 and cannot leave them.
int64_t sys_setpgid(Process& p, SetpgidArgs a) {
    if (a.pgid() < 0) return -EINVAL;
    if (p.tree()) return p.tree()->set_group(p, a.pid(), a.pgid());
    if (a.pid() != 0 && a.pid() != p.pid()) return -ESRCH;
    return -EPERM;
}
int64_t group_of(Process& p, int64_t pid, bool session) {
    if (p.tree()) return p.tree()->group(p, pid, session);
    return pid == 0 || pid == p.pid() ? kGuestPid : -ESRCH;
}
int64_t sys_getpgid(Process& p, PidArgs a) { return group_of(p, a.pid(), false); }
int64_t sys_getpgrp(Process& p, NoArgs) { return group_of(p, 0, false); }
int64_t sys_getsid(Process& p, PidArgs a) { return group_of(p, a.pid(), true); }
int64_t sys_setsid(Process& p, NoArgs) { return p.tree() ? p.tree()->new_session(p) : -EPERM; }

// A new process (ProcessTree::fork) for fork, vfork and clone without
// CLONE_VM. CLONE_VM with CLONE_VFORK (posix_spawn's) is served by a copy
// too: such a child only execs or exits, on the stack it was given; what it
// writes is not seen by the parent (an exec failure's errno: the parent
// then sees the child exit 127). Threads (CLONE_VM alone) are not yet.
int64_t start_child(Process& p, const CloneRequest& req) {
    constexpr uint64_t kHandled = CLONE_VM | CLONE_VFORK | CLONE_PARENT_SETTID | CLONE_CHILD_SETTID |
                                  CLONE_CHILD_CLEARTID | CLONE_SETTLS | CLONE_PTRACE | CLONE_UNTRACED;
    if (req.flags & CLONE_SIGHAND && !(req.flags & CLONE_VM)) return -EINVAL;
    if (req.flags & CLONE_THREAD && !(req.flags & CLONE_SIGHAND)) return -EINVAL;
    if ((req.flags & CLONE_VM) && !(req.flags & CLONE_VFORK)) {  // threads: not yet
        p.note_refused_thread();
        return -ENOSYS;
    }
    if (req.flags & ~kHandled) return -EINVAL;
    if (!p.tree() || !p.context()) return -ENOSYS;  // a lone process (tests, fuzzing)
    UserContext child = *p.context();
    child.regs.rax = 0;
    if (req.stack) child.regs.rsp = req.stack;
    const int64_t pid = p.tree()->fork(p, child, req);
    if (pid > 0 && req.flags & CLONE_PARENT_SETTID) {
        const int32_t tid = static_cast<int32_t>(pid);
        (void)p.mem().write(req.parent_tid, &tid, sizeof tid);
    }
    return pid;
}

int64_t sys_fork(Process& p, NoArgs) { return start_child(p, {}); }

int64_t sys_vfork(Process& p, NoArgs) { return start_child(p, {.flags = CLONE_VM | CLONE_VFORK}); }

int64_t sys_clone(Process& p, CloneArgs a) {
    return start_child(p, {.flags = a.flags() & ~uint64_t{0xff},
                           .exit_signal = static_cast<int>(a.flags() & 0xff),
                           .stack = a.stack(),
                           .parent_tid = a.parent_tid(),
                           .child_tid = a.child_tid(),
                           .tls = a.tls()});
}

int64_t sys_clone3(Process& p, Clone3Args a) {
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal,
    // stack, stack_size, tls (version 0, 64 bytes), then set_tid,
    // set_tid_size and cgroup, which must be 0 here.
    std::array<uint64_t, 11> args{};
    if (a.size() < 64 || a.size() > 4096) return a.size() < 64 ? -EINVAL : -E2BIG;
    const uint64_t known = std::min<uint64_t>(a.size(), sizeof args);
    if (!p.mem().read(a.uargs(), args.data(), known)) return -EFAULT;
    for (uint64_t off = sizeof args; off < a.size(); off += 8) {  // a newer caller's fields: all zero
        uint64_t more = 0;
        if (!p.mem().read(a.uargs() + off, &more, std::min<uint64_t>(8, a.size() - off))) return -EFAULT;
        if (more) return -E2BIG;
    }
    const auto [flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size,
                cgroup] = args;
    if (exit_signal > 64 || set_tid || set_tid_size || cgroup || flags >> 32) return -EINVAL;
    if ((stack == 0) != (stack_size == 0)) return -EINVAL;
    (void)pidfd;
    return start_child(p, {.flags = flags,
                           .exit_signal = static_cast<int>(exit_signal),
                           .stack = stack ? stack + stack_size : 0,
                           .parent_tid = parent_tid,
                           .child_tid = child_tid,
                           .tls = tls});
}

namespace {

// A reaped child's rusage, when asked for (`at` not 0): zeros, the
// children's use not being accounted. False for a bad address.
bool write_no_usage(Process& p, uint64_t at) {
    const rusage none{};
    return !at || p.mem().write_obj(at, none);
}

}  // namespace

// wait4 and waitid check their arguments as Linux does, then ask the tree.
int64_t sys_wait4(Process& p, Wait4Args a) {
    if (a.options() & ~uint64_t(WNOHANG | WUNTRACED | WCONTINUED | __WNOTHREAD | __WCLONE | __WALL)) return -EINVAL;
    if (a.pid() == INT32_MIN) return -ESRCH;  // -INT_MIN overflows, as Linux says
    if (!p.tree()) return -ECHILD;
    int status = 0;
    ProcessTree::WaitFor target{ProcessTree::WaitFor::kAny, 0};
    if (a.pid() > 0) target = {ProcessTree::WaitFor::kPid, a.pid()};
    if (a.pid() == 0) target = {ProcessTree::WaitFor::kGroup, p.tree()->group(p, 0, false)};
    if (a.pid() < -1) target = {ProcessTree::WaitFor::kGroup, -a.pid()};
    const int64_t pid = p.tree()->wait(p, target, a.options() & WNOHANG, false, status);
    if (pid <= 0) return pid;
    if (a.status() && !p.mem().write_obj(a.status(), status)) return -EFAULT;
    if (!write_no_usage(p, a.rusage())) return -EFAULT;
    return pid;
}

int64_t sys_waitid(Process& p, WaitidArgs a) {
    const uint64_t known = WNOHANG | WEXITED | WSTOPPED | WCONTINUED | WNOWAIT | __WNOTHREAD | __WCLONE | __WALL;
    if (a.options() & ~known || !(a.options() & (WEXITED | WSTOPPED | WCONTINUED))) return -EINVAL;
    int64_t pid = -1, pgid = -1;
    switch (a.idtype()) {
        case P_ALL: break;
        case P_PID:
            if (static_cast<int32_t>(a.id()) <= 0) return -EINVAL;
            pid = static_cast<int32_t>(a.id());
            break;
        case P_PGID:  // 0: the caller's group
            if (static_cast<int32_t>(a.id()) < 0) return -EINVAL;
            pgid = static_cast<int32_t>(a.id());
            break;
        case P_PIDFD: return static_cast<int32_t>(a.id()) < 0 ? -EINVAL : -EBADF;  // no pidfd exists
        default: return -EINVAL;
    }
    if (!p.tree() || !(a.options() & WEXITED)) return -ECHILD;  // stops are not reported
    int status = 0;
    ProcessTree::WaitFor target{ProcessTree::WaitFor::kAny, 0};
    if (pid > 0) target = {ProcessTree::WaitFor::kPid, pid};
    if (pgid >= 0) target = {ProcessTree::WaitFor::kGroup, pgid ? pgid : p.tree()->group(p, 0, false)};
    const int64_t got = p.tree()->wait(p, target, a.options() & WNOHANG, a.options() & WNOWAIT, status);
    if (got < 0) return got;
    // siginfo_t: si_signo, si_errno, si_code, then si_pid, si_uid, si_status.
    struct {
        int32_t signo, err, code, pad;
        int32_t pid;
        uint32_t uid;
        int32_t status;
        uint8_t rest[128 - 28];
    } info{};
    if (got > 0) {
        info.signo = SIGCHLD;
        info.code = WIFEXITED(status) ? CLD_EXITED : CLD_KILLED;
        info.pid = static_cast<int32_t>(got);
        info.uid = p.options().uid;
        info.status = WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status);
    }
    if (a.infop() && !p.mem().write_obj(a.infop(), info)) return -EFAULT;
    if (!write_no_usage(p, a.rusage())) return -EFAULT;
    return 0;
}

// CPU time: the vCPU's host thread's, which runs the guest's code and the
// VMM's service of its calls. No children: theirs are zero.
int64_t sys_getrusage(Process& p, GetrusageArgs a) {
    rusage r{};
    switch (a.who()) {
        case RUSAGE_SELF:
        case RUSAGE_THREAD:
            if (::getrusage(RUSAGE_THREAD, &r) != 0) return -errno;
            break;
        case RUSAGE_CHILDREN: break;
        default: return -EINVAL;
    }
    return p.mem().write_obj(a.usage(), r) ? 0 : -EFAULT;
}

int64_t sys_times(Process& p, TimesArgs a) {
    tms host{};
    const clock_t now = ::times(&host);
    if (a.buf()) {
        rusage r{};
        ::getrusage(RUSAGE_THREAD, &r);
        const long hz = ::sysconf(_SC_CLK_TCK);
        auto ticks = [hz](const timeval& tv) {
            return static_cast<clock_t>(tv.tv_sec * hz + tv.tv_usec * hz / 1000000);
        };
        tms t{ticks(r.ru_utime), ticks(r.ru_stime), 0, 0};
        if (!p.mem().write_obj(a.buf(), t)) return -EFAULT;
    }
    return now;
}

int64_t sys_futex(Process& p, FutexArgs a) {
    int op = static_cast<int>(a.op()) & FUTEX_CMD_MASK;
    switch (op) {
        case FUTEX_WAKE:
        case FUTEX_WAKE_BITSET: return 0;  // no other threads to wake
        case FUTEX_WAIT:
        case FUTEX_WAIT_BITSET: {
            uint32_t v;
            if (!p.mem().read_obj(a.uaddr(), v)) return -EFAULT;
            if (v != static_cast<uint32_t>(a.val())) return -EAGAIN;
            // Nobody else can change the word: waiting would never end.
            return a.timeout() ? -ETIMEDOUT : -EDEADLK;
        }
        default: return -ENOSYS;
    }
}

// Nice values of the one process (PRIO_PROCESS 0 or 1, its group 0 or 1,
// its user 0 or the guest's uid): kept and read back, not applied to the
// host. As without CAP_SYS_NICE, a non-root guest may only raise its own.
namespace {
int64_t priority_target(Process& p, int which, int64_t who) {
    switch (which) {
        case PRIO_PROCESS:
        case PRIO_PGRP: return who == 0 || who == kGuestPid ? 0 : -ESRCH;
        case PRIO_USER: return who == 0 || who == p.options().uid ? 0 : -ESRCH;
        default: return -EINVAL;
    }
}
}  // namespace

int64_t sys_getpriority(Process& p, PriorityArgs a) {
    if (int64_t r = priority_target(p, a.which(), a.who()); r < 0) return r;
    return 20 - p.prctl_state().nice;  // the kernel's form: 40..1 for -20..19
}

int64_t sys_setpriority(Process& p, PriorityArgs a) {
    if (int64_t r = priority_target(p, a.which(), a.who()); r < 0) return r;
    const int nice = std::clamp(a.value(), -20, 19);
    if (nice < p.prctl_state().nice && p.options().uid != 0) return -EACCES;
    p.prctl_state().nice = nice;
    return 0;
}

// I/O priorities (ioprio_set(2)), kept like the nice value. The who of
// IOPRIO_WHO_PROCESS, _PGRP and _USER (1, 2, 3) as for setpriority.
namespace {
int64_t ioprio_target(Process& p, PriorityArgs a) {
    if (a.which() < 1 || a.which() > 3) return -EINVAL;
    return priority_target(p, a.which() - 1, a.who());  // PRIO_PROCESS, _PGRP, _USER
}
}  // namespace

int64_t sys_ioprio_get(Process& p, PriorityArgs a) {
    if (int64_t r = ioprio_target(p, a); r < 0) return r;
    return p.prctl_state().ioprio;
}

int64_t sys_ioprio_set(Process& p, PriorityArgs a) {
    if (int64_t r = ioprio_target(p, a); r < 0) return r;
    // Linux's ioprio_check_cap: a class and a level (the bits between them
    // are hints, which it does not check).
    const int value = a.value(), cls = (value >> 13) & 7, level = value & 7;
    enum { kNone, kRealtime, kBestEffort, kIdle };
    switch (cls) {
        case kRealtime:
            if (p.options().uid != 0) return -EPERM;  // CAP_SYS_NICE or CAP_SYS_ADMIN
            break;
        case kBestEffort:
        case kIdle: break;
        case kNone:
            if (level) return -EINVAL;
            break;
        default: return -EINVAL;
    }
    p.prctl_state().ioprio = value;
    return 0;
}

int64_t sys_umask(Process& p, UmaskArgs a) {
    unsigned old = p.umask();
    p.umask() = static_cast<unsigned>(a.mask()) & 0777;
    return old;
}

int64_t sys_getrandom(Process& p, GetrandomArgs a) {
    if (a.flags() & ~uint64_t(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE)) return -EINVAL;
    uint64_t len = std::min<uint64_t>(a.count(), 32 << 20);
    uint64_t done = 0;
    bool ok = p.mem().for_each_chunk(a.buf(), len, true, [&](uint8_t* h, uint64_t n) {
        if (::getrandom(h, n, 0) == static_cast<ssize_t>(n)) done += n;
    });
    return ok || done ? static_cast<int64_t>(done) : -EFAULT;
}

int64_t sys_sysinfo(Process& p, SysinfoArgs a) {
    struct sysinfo host;
    ::sysinfo(&host);
    struct sysinfo s {};
    s.uptime = host.uptime;
    std::memcpy(s.loads, host.loads, sizeof s.loads);
    s.totalram = p.as().memory().size();
    s.freeram = p.as().allocator().pages_free() * memory::kPageSize;
    s.procs = 1;
    s.mem_unit = 1;
    return p.mem().write_obj(a.info(), s) ? 0 : -EFAULT;
}

}  // namespace vessel::thin
