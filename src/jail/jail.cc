#include "jail/jail.h"

#include <arpa/inet.h>
#include <cap-ng.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <linux/securebits.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "base/fd.h"
#include "base/safe_file.h"
#include "base/timings.h"

namespace vessel::jail {
namespace {

// The signals that stop a VMM from outside (a terminal, vesseld, kill).
constexpr int kStopSignals[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM};

// Where the new root is assembled, in the jail's own mount namespace
// (the host's /tmp is untouched; bubblewrap does the same).
constexpr char kStage[] = "/tmp";

// Where the shared isolated network namespace is kept (isolated_netns).
constexpr char kRunDir[] = "/run/vessel";
constexpr char kIsolatedNetns[] = "/run/vessel/netns-isolated";
constexpr char kIsolatedNetnsLock[] = "/run/vessel/netns-isolated.lock";

// Child to parent, over the status pipe: how the VMM ends.
struct Ending {
    int32_t signal;  // 0: exited with `status`
    int32_t status;
};

bool g_inside = false;
int g_status_fd = -1;  // in the VMM: the pipe's write end
int g_netns_fd = -1;   // in the VMM: the shared isolated network namespace, or -1
pid_t g_vmm = -1;      // in the parent: the VMM

void tell_parent(Ending e) {
    if (g_status_fd < 0) return;
    ssize_t n;
    do n = ::write(g_status_fd, &e, sizeof e);
    while (n < 0 && errno == EINTR);
}

// The VMM is pid 1 of its namespace, and the kernel drops signals whose
// action is the default for pid 1: without this handler it would ignore
// Ctrl-C and `kill`. It ends the way the default action would have, as
// the parent's death by the same signal.
void stop_vmm(int sig) {
    tell_parent({sig, 0});
    ::_exit(128 + sig);
}

void forward_to_vmm(int sig) {
    if (g_vmm > 0) ::kill(g_vmm, sig);
}

// Job control (Ctrl-Z): pid 1 of a namespace ignores SIGTSTP, but SIGSTOP
// from outside its namespace stops it. The parent stops the VMM, then
// itself, so the shell sees its job stopped; SIGCONT (`fg`, `bg`) reaches
// both.
void suspend_with_vmm(int) {
    int saved = errno;
    if (g_vmm > 0) ::kill(g_vmm, SIGSTOP);
    ::kill(::getpid(), SIGSTOP);
    errno = saved;
}

[[noreturn]] void die_of(int sig) {
    struct rlimit none {
        0, 0
    };
    ::setrlimit(RLIMIT_CORE, &none);  // the VMM crashed, not this process: no second core
    ::signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
    ::raise(sig);
    ::_exit(128 + sig);
}

[[noreturn]] void supervise(Fd status, const std::function<void()>& after_exit) {
    struct sigaction sa {};
    sa.sa_handler = forward_to_vmm;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int s : kStopSignals) ::sigaction(s, &sa, nullptr);
    ::sigaction(SIGCONT, &sa, nullptr);
    ::sigaction(SIGWINCH, &sa, nullptr);  // the terminal's size: a thin guest's
    sa.sa_handler = suspend_with_vmm;
    ::sigaction(SIGTSTP, &sa, nullptr);

    Ending e{};
    ssize_t n;
    do n = ::read(status.get(), &e, sizeof e);
    while (n < 0 && errno == EINTR);
    if (n != sizeof e) {  // the VMM ended without a word (a crash, SIGKILL): its wait status says how
        int ws = 0;
        while (::waitpid(g_vmm, &ws, 0) < 0 && errno == EINTR) {
        }
        e = WIFSIGNALED(ws) ? Ending{WTERMSIG(ws), 0} : Ending{0, WIFEXITED(ws) ? WEXITSTATUS(ws) : 1};
    }
    if (after_exit) after_exit();
    std::fflush(nullptr);
    if (e.signal) die_of(e.signal);
    ::_exit(e.status);
}

// For a caller who may not make namespaces: a user namespace where it has
// the capabilities to, with its own uid and gid mapped to themselves (the
// files the guest makes stay the user's), no setgroups.
Result<> enter_user_namespace() {
    uid_t uid = ::geteuid();
    gid_t gid = ::getegid();
    if (::unshare(CLONE_NEWUSER) != 0)
        return fail_errno(
            "jail: neither root nor allowed to make a user namespace (user.max_user_namespaces); --no-jail runs "
            "without the jail");
    auto put = [](const char* file, const std::string& text) -> Result<> {
        Fd f(::open(file, O_WRONLY | O_CLOEXEC));
        if (!f || ::write(f.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
            return fail_errno(std::string("jail: ") + file);
        return {};
    };
    if (auto r = put("/proc/self/setgroups", "deny"); !r) return r;
    if (auto r = put("/proc/self/uid_map", std::to_string(uid) + " " + std::to_string(uid) + " 1"); !r) return r;
    return put("/proc/self/gid_map", std::to_string(gid) + " " + std::to_string(gid) + " 1");
}

Result<int> thread_count() {
    DIR* d = ::opendir("/proc/self/task");
    if (!d) return fail_errno("jail: /proc/self/task");
    int n = 0;
    while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    return n;
}

// mkdir -p of `path`'s parents under the stage, then the mount point
// itself: a directory, or an empty file for a file or device.
Result<> make_mount_point(const std::string& path, bool directory) {
    for (size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1))
        if (::mkdir(path.substr(0, slash).c_str(), 0755) != 0 && errno != EEXIST)
            return fail_errno("jail: mkdir " + path.substr(0, slash));
    if (directory) {
        if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) return fail_errno("jail: mkdir " + path);
        return {};
    }
    Fd f(::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!f) return fail_errno("jail: mount point " + path);
    return {};
}

// A detached copy of what `source` is, with the mounts below it: read-only
// unless writable, never setuid or exec, devices only if asked.
Result<Fd> clone_tree(int source, const std::string& dest, bool writable, bool devices = false) {
    Fd tree(static_cast<int>(
        ::syscall(SYS_open_tree, source, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH | AT_RECURSIVE)));
    if (!tree) return fail_errno("jail: bind " + dest);
    mount_attr attr{};
    attr.attr_set =
        MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC | (devices ? 0 : MOUNT_ATTR_NODEV) | (writable ? 0 : MOUNT_ATTR_RDONLY);
    if (::syscall(SYS_mount_setattr, tree.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
        return fail_errno("jail: bind " + dest + ": mount attributes");
    return tree;
}

// Mounts a tree from clone_tree() at `dest`.
Result<> place_tree(const Fd& tree, const std::string& dest) {
    struct stat st;
    if (::fstat(tree.get(), &st) != 0) return fail_errno("jail: " + dest + ": source");
    if (auto r = make_mount_point(dest, S_ISDIR(st.st_mode)); !r) return r;
    if (::syscall(SYS_move_mount, tree.get(), "", AT_FDCWD, dest.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
        return fail_errno("jail: bind " + dest);
    return {};
}

// The devices a thin guest's /dev/null & co. are answered from: Linux's
// fixed numbers (Documentation/admin-guide/devices.txt), made afresh in the
// new root rather than bound from the host's /dev (a third of the system
// calls, which cost microseconds each on nested hosts).
struct Device {
    const char* path;
    unsigned minor;  // major 1, the memory devices
};
constexpr Device kDevices[] = {
    {"/dev/null", 3}, {"/dev/zero", 5}, {"/dev/full", 7}, {"/dev/random", 8}, {"/dev/urandom", 9}};

// The five devices in the new root: made with mknod, or, in a user
// namespace (where mknod is refused and a tmpfs of its own holds no
// usable device), bound from the host's /dev.
Result<> make_devices(const std::string& stage) {
    mode_t old_umask = ::umask(0);
    bool made = true;
    for (const Device& d : kDevices)
        if (::mknod((stage + d.path).c_str(), S_IFCHR | 0666, ::makedev(1, d.minor)) != 0) {
            made = false;
            break;
        }
    ::umask(old_umask);
    if (made) return {};
    if (errno != EPERM) return fail_errno("jail: mknod");
    for (const Device& d : kDevices) {
        ::unlink((stage + d.path).c_str());
        Fd host(::open(d.path, O_PATH | O_NOFOLLOW | O_CLOEXEC));
        if (!host) return fail_errno(std::string("jail: ") + d.path);
        auto tree = clone_tree(host.get(), stage + d.path, true, true);
        if (!tree) return std::unexpected(tree.error());
        if (auto r = place_tree(*tree, stage + d.path); !r) return r;
    }
    return {};
}

Result<> build_root(const std::vector<Bind>& binds) {
    // The copies are taken before the stage's tmpfs covers /tmp: a bind of
    // a tree holding /tmp (--root /) shows the host's /tmp, not the stage.
    std::vector<Fd> trees;
    for (const Bind& b : binds) {
        if (b.target.empty() || b.target[0] != '/' || b.target.find("..") != std::string::npos)
            return fail("jail: bind target must be an absolute path: " + b.target, EINVAL);
        auto tree = clone_tree(b.source, b.target, b.writable);
        if (!tree) return std::unexpected(tree.error());
        trees.push_back(std::move(*tree));
    }
    // Not nodev: it holds the five device nodes below, and nothing else can
    // ever make one there (the root turns read-only, CAP_MKNOD goes).
    if (::mount("vessel-jail", kStage, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=256") != 0)
        return fail_errno(std::string("jail: a tmpfs for the new root on ") + kStage);
    std::string stage = kStage;
    for (size_t i = 0; i < binds.size(); ++i)
        if (auto r = place_tree(trees[i], stage + binds[i].target); !r) return r;
    if (::mkdir((stage + "/dev").c_str(), 0755) != 0) return fail_errno("jail: mkdir /dev");
    if (auto r = make_devices(stage); !r) return r;
    // /proc shows this pid namespace only (the VMM), without /proc/sys
    // and the other system-wide files: the VMM reads /proc/self/pagemap
    // for snapshots.
    if (auto r = make_mount_point(stage + "/proc", true); !r) return r;
    if (::mount("proc", (stage + "/proc").c_str(), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                "subset=pid,hidepid=invisible") != 0)
        return fail_errno("jail: /proc (subset=pid needs Linux 5.8)");

    // Swap roots and let go of the old one (pivot_root(".", ".") stacks the
    // old root on the new one; detaching it leaves only the new).
    if (::chdir(kStage) != 0) return fail_errno("jail: chdir");
    if (::syscall(SYS_pivot_root, ".", ".") != 0) return fail_errno("jail: pivot_root");
    if (::umount2(".", MNT_DETACH) != 0) return fail_errno("jail: detaching the old root");
    if (::chdir("/") != 0) return fail_errno("jail: chdir /");
    if (::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, nullptr) != 0)
        return fail_errno("jail: read-only root");
    return {};
}

Result<> set_limits(const Options& o) {
    struct rlimit nofile {
        o.nofile, o.nofile
    };
    if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0) {
        // Not root: no raising the hard limit. As much as it allows.
        struct rlimit now;
        if (errno != EPERM || ::getrlimit(RLIMIT_NOFILE, &now) != 0) return fail_errno("jail: RLIMIT_NOFILE");
        nofile.rlim_cur = nofile.rlim_max = std::min(o.nofile, now.rlim_max);
        if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0) return fail_errno("jail: RLIMIT_NOFILE");
    }
    if (o.fsize) {
        struct rlimit fsize {
            *o.fsize, *o.fsize
        };
        if (::setrlimit(RLIMIT_FSIZE, &fsize) != 0) return fail_errno("jail: RLIMIT_FSIZE");
    }
    return {};
}

// Every capability gone from every set, the bounding set included, and
// locked so that neither uid 0 nor a setuid file can bring one back. The
// order matters: the bounding set needs CAP_SETPCAP and the ids need
// CAP_SETUID/CAP_SETGID, so both go before the capabilities themselves.
Result<> drop_privileges(const Options& o) {
    if (::prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                                       SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED) != 0)
        return fail_errno("jail: securebits");
    capng_clear(CAPNG_SELECT_ALL);
    if (capng_apply(CAPNG_SELECT_BOUNDS) != 0) return fail("jail: cannot clear the capability bounding set", EPERM);
    if (o.uid || o.gid) {
        gid_t gid = o.gid.value_or(static_cast<gid_t>(o.uid.value_or(0)));
        if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0)
            return fail_errno("jail: cannot become gid " + std::to_string(gid));
    }
    if (o.uid && ::setresuid(*o.uid, *o.uid, *o.uid) != 0)
        return fail_errno("jail: cannot become uid " + std::to_string(*o.uid));
    if (capng_apply(CAPNG_SELECT_BOTH) != 0) return fail("jail: cannot drop capabilities", EPERM);
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
        return fail_errno("jail: ambient capabilities");
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail_errno("jail: no_new_privs");
    return {};
}

// The namespace kept at kIsolatedNetns, when a network namespace (a bind
// mount of /proc/PID/ns/net) is there; else empty.
Fd open_kept_netns() {
    Fd ns(::open(kIsolatedNetns, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    struct statfs fs;
    if (ns && ::fstatfs(ns.get(), &fs) == 0 && fs.f_type == NSFS_MAGIC &&
        ::ioctl(ns.get(), NS_GET_NSTYPE) == CLONE_NEWNET)
        return ns;
    return {};
}

// The network namespace jailed VMMs without networking share: made once
// per boot, kept by a bind mount at kIsolatedNetns, never given an
// interface (its loopback stays down: a jailed VMM has no CAP_NET_ADMIN
// to bring it up). Joining it costs a setns (~0.03 ms) where a namespace of
// one's own costs ~0.6 ms to make and more to tear down. Empty (the caller
// makes its own) where it cannot be had: not root, no /run.
Fd isolated_netns() {
    if (Fd ns = open_kept_netns()) return ns;
    if (::geteuid() != 0) return {};
    if (::mkdir(kRunDir, 0700) != 0 && errno != EEXIST) return {};
    struct stat dir;
    // Only root may have put anything there.
    if (::lstat(kRunDir, &dir) != 0 || !S_ISDIR(dir.st_mode) || dir.st_uid != 0 || (dir.st_mode & 022)) return {};
    Fd lock(::open(kIsolatedNetnsLock, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!lock || ::flock(lock.get(), LOCK_EX) != 0) return {};
    if (Fd ns = open_kept_netns()) return ns;  // another vessel made it meanwhile
    struct stat before;
    const bool existed = ::lstat(kIsolatedNetns, &before) == 0;
    Fd target(::open(kIsolatedNetns, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0400));
    if (!target) return {};
    // A failure below leaves no empty file behind that this call made.
    auto give_up = [&]() -> Fd {
        if (!existed) (void)::unlink(kIsolatedNetns);
        return {};
    };
    // A child makes the namespace and mounts it over the file, in the
    // host's mount namespace (this process has not left it yet).
    pid_t pid = ::fork();
    if (pid < 0) return give_up();
    if (pid == 0) {
        bool ok = ::unshare(CLONE_NEWNET) == 0 &&
                  ::mount("/proc/self/ns/net", kIsolatedNetns, nullptr, MS_BIND, nullptr) == 0;
        ::_exit(ok ? 0 : 1);
    }
    int ws = 0;
    while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) return give_up();
    return open_kept_netns();
}

}  // namespace

Result<> enter_namespaces(std::function<void()> after_exit) {
    if (g_inside) return {};
    if (auto n = thread_count(); !n || *n != 1)
        return fail("jail: the namespaces must be entered before any thread starts", EINVAL);
    PhaseTimer timer;  // VESSEL_TIMINGS=1
    // Found (or made) here, in the host's mount namespace, and joined by lock().
    Fd netns = isolated_netns();
    timer.mark("jail: find netns");
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return fail_errno("jail: pipe");
    Fd read_end(p[0]), write_end(p[1]);
    // The child is the new namespace's first process, its pid 1. Without
    // the right to make one (not root), a user namespace of its own gives
    // it, as bubblewrap does.
    if (::unshare(CLONE_NEWPID) != 0) {
        if (errno != EPERM) return fail_errno("jail: new pid namespace");
        if (auto r = enter_user_namespace(); !r) return r;
        if (::unshare(CLONE_NEWPID) != 0) return fail_errno("jail: new pid namespace");
    }
    pid_t pid = ::fork();
    if (pid < 0) return fail_errno("jail: fork");
    if (pid > 0) {
        g_vmm = pid;
        write_end.reset();
        netns.reset();
        supervise(std::move(read_end), after_exit);
    }
    read_end.reset();
    timer.mark("jail: fork");
    // The parent holds nothing of the VM: if it dies, so does the VMM.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
        auto e = fail_errno("jail: new mount, ipc and uts namespaces");
        return e;
    }
    // Nothing mounted from here on reaches the host.
    timer.mark("jail: mnt/ipc/uts ns");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return fail_errno("jail: private mounts");
    timer.mark("jail: private mounts");
    ::sethostname("vessel", 6);
    struct sigaction sa {};
    sa.sa_handler = stop_vmm;
    sigemptyset(&sa.sa_mask);
    for (int s : kStopSignals) ::sigaction(s, &sa, nullptr);
    g_status_fd = write_end.release();
    g_netns_fd = netns.release();
    g_inside = true;
    return {};
}

bool inside() { return g_inside; }

void announce_exit(int status) {
    if (!g_inside) return;
    std::fflush(nullptr);
    // The parent leaves at once now: its death must not kill the teardown.
    ::prctl(PR_SET_PDEATHSIG, 0);
    tell_parent({0, status});
}

std::string sandbox_target(size_t index) { return "/sandbox/" + std::to_string(index); }

Result<> lock(const Options& o, const std::vector<Bind>& binds) {
    if (!g_inside) return fail("jail: lock() needs the jail's namespaces (enter_namespaces)", EINVAL);
    auto threads = thread_count();
    if (!threads) return std::unexpected(threads.error());
    if (*threads != 1)
        return fail("jail: the VMM runs " + std::to_string(*threads) + " threads; the jail is locked before any starts",
                    EINVAL);
    PhaseTimer timer;  // VESSEL_TIMINGS=1
    if (Fd shared(g_netns_fd); !shared || ::setns(shared.get(), CLONE_NEWNET) != 0)
        if (::unshare(CLONE_NEWNET) != 0) return fail_errno("jail: new network namespace");
    g_netns_fd = -1;
    timer.mark("jail: netns");
    if (auto r = build_root(binds); !r) return r;
    timer.mark("jail: root");
    if (auto r = set_limits(o); !r) return r;
    auto r = drop_privileges(o);
    timer.mark("jail: privileges");
    return r;
}

}  // namespace vessel::jail
