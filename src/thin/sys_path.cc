// Calls that name files by path: open and create, the cwd, directories,
// removal, renames, symlinks, and metadata changes (mode, owner, times).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>

#include "thin/process.h"
#include "thin/procfs.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452  // Linux 6.6; older headers lack it
#endif

namespace vessel::thin {

// A host descriptor for (dirfd, path): the file itself (O_PATH), or the
// descriptor's own file for AT_EMPTY_PATH. `holder` keeps a fresh one open.
int64_t resolve(Process& p, int dirfd, uint64_t path_ptr, int flags, Fd& holder, int& host_fd) {
    std::string path;
    bool empty_ok = flags & AT_EMPTY_PATH;
    if (int64_t r = p.read_path(dirfd, path_ptr, path, empty_ok); r < 0) return r;
    return resolve_path(p, dirfd, std::move(path), flags, holder, host_fd);
}

int64_t resolve_path(Process& p, int dirfd, std::string path, int flags, Fd& holder, int& host_fd) {
    if (path.empty()) {
        if (dirfd == AT_FDCWD) {
            path = p.cwd();
        } else {
            OpenFile* f = file_of(p, static_cast<uint64_t>(dirfd));
            if (!f) return -EBADF;
            host_fd = f->host.get();
            return 0;
        }
    }
    // /proc's files (not its directories or links yet: ENOENT).
    auto fd = procfs::covers(path) ? procfs::open(p, path, O_RDONLY)
                                   : p.sandbox().open_path(path, flags & AT_SYMLINK_NOFOLLOW);
    if (!fd && fd.error().sys_errno == EISDIR) fd = procfs::directory_stand_in();  // a /proc directory
    if (!fd) return -fd.error().sys_errno;
    holder = std::move(*fd);
    host_fd = holder.get();
    return 0;
}

namespace {

// Modes a guest may set on host files. Set-user/group-ID bits are dropped, as
// on a nosuid mount: a guest must not plant a setuid binary (owned by the
// VMM's user, possibly root) in a host directory it was given with --rw.
constexpr unsigned kGuestModeMask = 01777;

int64_t install(Process& p, Fd host, std::string guest_path, bool cloexec) {
    struct stat st;
    auto f = std::make_shared<OpenFile>();
    f->directory = ::fstat(host.get(), &st) == 0 && S_ISDIR(st.st_mode);
    f->host = std::move(host);
    f->guest_path = std::move(guest_path);
    int fd = p.fds().install(std::move(f), cloexec);
    return fd;
}

std::string strip_slash(std::string path) {
    while (path.size() > 1 && path.back() == '/') path.pop_back();
    return path;
}

int64_t open_proc(Process& p, const std::string& path, int flags, bool cloexec) {
    auto f = procfs::open_file(p, path, flags);
    if (!f) return -f.error().sys_errno;
    std::shared_ptr<OpenFile> file = *f;
    int fd = p.fds().install(std::move(*f), cloexec);
    // fd/ lists the descriptor it is read through too, as on Linux.
    if (fd >= 0 && file->entries && path.ends_with("/fd"))
        if (auto again = procfs::list(p, path))
            file->entries = std::make_shared<const std::vector<OpenFile::Entry>>(std::move(*again));
    return fd;
}

int64_t open_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t flags, uint64_t mode) {
    std::string path;
    if (int64_t r = p.read_path(dirfd, path_ptr, path); r < 0) return r;
    int host_flags = static_cast<int>(flags) & ~O_CLOEXEC;
    if (host_flags & O_CREAT && !path.empty() && path.back() == '/') return -EISDIR;
    if (procfs::covers(strip_slash(path))) return open_proc(p, strip_slash(path), host_flags, flags & O_CLOEXEC);
    auto fd = p.sandbox().open(path, host_flags, static_cast<unsigned>(mode) & ~p.umask() & kGuestModeMask);
    if (!fd) return -fd.error().sys_errno;
    return install(p, std::move(*fd), strip_slash(path), flags & O_CLOEXEC);
}

}  // namespace

int64_t sys_open(Process& p, OpenArgs a) { return open_common(p, AT_FDCWD, a.path(), a.flags(), a.mode()); }

int64_t sys_creat(Process& p, PathModeArgs a) {
    return open_common(p, AT_FDCWD, a.path(), O_CREAT | O_WRONLY | O_TRUNC, a.mode());
}

int64_t sys_openat(Process& p, OpenatArgs a) { return open_common(p, a.dirfd(), a.path(), a.flags(), a.mode()); }

int64_t sys_getcwd(Process& p, GetcwdArgs a) {
    const std::string& cwd = p.cwd();
    if (a.size() < cwd.size() + 1) return -ERANGE;
    return p.mem().write(a.buf(), cwd.c_str(), cwd.size() + 1) ? static_cast<int64_t>(cwd.size() + 1) : -EFAULT;
}

namespace {

int64_t change_dir(Process& p, int host_fd, const std::string& path) {
    struct stat st;
    if (::fstat(host_fd, &st) < 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
    if (::syscall(SYS_faccessat2, host_fd, "", X_OK, AT_EMPTY_PATH) < 0) return -errno;
    p.cwd() = strip_slash(path);
    return 0;
}

}  // namespace

int64_t Process::set_working_directory(const std::string& path) {
    if (path.empty() || path[0] != '/') return -EINVAL;
    auto fd = sandbox().open_path(path, false);
    if (!fd) return -fd.error().sys_errno;
    return change_dir(*this, fd->get(), path);
}

int64_t sys_chdir(Process& p, PathArgs a) {
    std::string path;
    if (int64_t r = p.read_path(AT_FDCWD, a.path(), path); r < 0) return r;
    auto fd = p.sandbox().open_path(path, false);
    if (!fd) return -fd.error().sys_errno;
    return change_dir(p, fd->get(), path);
}

int64_t sys_fchdir(Process& p, FdArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (f->guest_path.empty()) return -ENOTDIR;
    return change_dir(p, f->host.get(), f->guest_path);
}

namespace {

// Runs `op(parent_fd, name)` on the parent directory of a guest path.
template <class Op>
int64_t in_parent(Process& p, int dirfd, uint64_t path_ptr, bool need_write, Op&& op) {
    std::string path;
    if (int64_t r = p.read_path(dirfd, path_ptr, path); r < 0) return r;
    bool trailing = path.size() > 1 && path.back() == '/';
    path = strip_slash(path);
    std::string name;
    auto parent = p.sandbox().open_parent(path, name, need_write);
    if (!parent) return -parent.error().sys_errno;
    if (name == "." || name == "..") return -EINVAL;
    return op(parent->get(), name, trailing);
}

int64_t mkdir_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t mode) {
    int64_t r = in_parent(p, dirfd, path_ptr, true, [&](int parent, const std::string& name, bool) -> int64_t {
        return ::mkdirat(parent, name.c_str(), static_cast<mode_t>(mode & kGuestModeMask & ~p.umask())) < 0 ? -errno
                                                                                                            : 0;
    });
    // "/" and mount points have no parent to create them in (EBUSY), but they
    // exist, and Linux says EEXIST: `mkdir -p /w/x` relies on it. Linux looks
    // the name up before it asks whether the file system is writable, so an
    // existing directory on a read-only mount is EEXIST too.
    if (r == -EROFS) {
        std::string path;
        if (p.read_path(dirfd, path_ptr, path) == 0 && p.sandbox().open_path(strip_slash(path), true)) return -EEXIST;
    }
    return r == -EBUSY ? -EEXIST : r;
}
}  // namespace

int64_t sys_mkdir(Process& p, PathModeArgs a) { return mkdir_common(p, AT_FDCWD, a.path(), a.mode()); }

int64_t sys_mkdirat(Process& p, AtPathModeArgs a) { return mkdir_common(p, a.dirfd(), a.path(), a.mode()); }

namespace {

int64_t unlink_common(Process& p, int dirfd, uint64_t path_ptr, int flags) {
    if (flags & ~AT_REMOVEDIR) return -EINVAL;
    return in_parent(p, dirfd, path_ptr, true, [&](int parent, const std::string& name, bool trailing) -> int64_t {
        if (trailing && !(flags & AT_REMOVEDIR)) {
            struct stat st;
            if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) return -EISDIR;
            return -ENOTDIR;
        }
        return ::unlinkat(parent, name.c_str(), flags) < 0 ? -errno : 0;
    });
}
}  // namespace

int64_t sys_unlink(Process& p, PathArgs a) { return unlink_common(p, AT_FDCWD, a.path(), 0); }
int64_t sys_rmdir(Process& p, PathArgs a) { return unlink_common(p, AT_FDCWD, a.path(), AT_REMOVEDIR); }

int64_t sys_unlinkat(Process& p, AtPathFlagsArgs a) {
    return unlink_common(p, a.dirfd(), a.path(), static_cast<int>(a.flags()));
}

namespace {

int64_t rename_common(Process& p, int olddir, uint64_t oldp, int newdir, uint64_t newp, unsigned flags) {
    std::string from, to, from_name, to_name;
    if (int64_t r = p.read_path(olddir, oldp, from); r < 0) return r;
    if (int64_t r = p.read_path(newdir, newp, to); r < 0) return r;
    const Sandbox::Mount *m1 = nullptr, *m2 = nullptr;
    auto f = p.sandbox().open_parent(strip_slash(from), from_name, true, &m1);
    if (!f) return -f.error().sys_errno;
    auto t = p.sandbox().open_parent(strip_slash(to), to_name, true, &m2);
    if (!t) return -t.error().sys_errno;
    if (m1 != m2) return -EXDEV;
    if (from_name == "." || from_name == ".." || to_name == "." || to_name == "..") return -EINVAL;
    if (::renameat2(f->get(), from_name.c_str(), t->get(), to_name.c_str(), flags) < 0) return -errno;
    return 0;
}
}  // namespace

namespace {

// A hard link inside one writable mount. Without AT_SYMLINK_FOLLOW the
// source's last component is linked as it is (a symlink stays a symlink);
// with it, the sandbox resolves the source (so a symlink cannot lead the
// host outside the mount) and the file is linked through /proc/self/fd,
// which needs no capability.
int64_t link_common(Process& p, int olddir, uint64_t oldp, int newdir, uint64_t newp, uint64_t flags) {
    if (flags & ~uint64_t(AT_SYMLINK_FOLLOW)) return flags & AT_EMPTY_PATH ? -ENOENT : -EINVAL;
    std::string from, to, from_name, to_name;
    if (int64_t r = p.read_path(olddir, oldp, from); r < 0) return r;
    if (int64_t r = p.read_path(newdir, newp, to); r < 0) return r;
    if (!to.empty() && to.back() == '/') return -ENOENT;
    const Sandbox::Mount *m1 = nullptr, *m2 = nullptr;
    auto t = p.sandbox().open_parent(strip_slash(to), to_name, true, &m2);
    if (!t) return -t.error().sys_errno;
    if (to_name == "." || to_name == "..") return -EEXIST;
    if (!(flags & AT_SYMLINK_FOLLOW)) {
        auto f = p.sandbox().open_parent(strip_slash(from), from_name, false, &m1);
        if (!f) return -f.error().sys_errno;
        if (m1 != m2) return -EXDEV;
        if (from_name == "." || from_name == "..") return -EPERM;  // a directory
        return ::linkat(f->get(), from_name.c_str(), t->get(), to_name.c_str(), 0) < 0 ? -errno : 0;
    }
    auto src = p.sandbox().open_path(strip_slash(from), false);
    if (!src) return -src.error().sys_errno;
    struct stat s, m;
    if (::fstat(src->get(), &s) < 0 || ::fstat(m2->dir.get(), &m) < 0) return -errno;
    if (s.st_dev != m.st_dev) return -EXDEV;
    if (S_ISDIR(s.st_mode)) return -EPERM;
    std::string proc = "/proc/self/fd/" + std::to_string(src->get());
    return ::linkat(AT_FDCWD, proc.c_str(), t->get(), to_name.c_str(), AT_SYMLINK_FOLLOW) < 0 ? -errno : 0;
}

}  // namespace

int64_t sys_link(Process& p, LinkArgs a) { return link_common(p, AT_FDCWD, a.oldpath(), AT_FDCWD, a.newpath(), 0); }

int64_t sys_linkat(Process& p, LinkatArgs a) {
    return link_common(p, a.olddirfd(), a.oldpath(), a.newdirfd(), a.newpath(), a.flags());
}

int64_t sys_rename(Process& p, RenameArgs a) {
    return rename_common(p, AT_FDCWD, a.oldpath(), AT_FDCWD, a.newpath(), 0);
}

int64_t sys_renameat(Process& p, RenameatArgs a) {
    return rename_common(p, a.olddirfd(), a.oldpath(), a.newdirfd(), a.newpath(), 0);
}

int64_t sys_renameat2(Process& p, RenameatArgs a) {
    if (a.flags() & ~uint64_t(RENAME_NOREPLACE | RENAME_EXCHANGE)) return -EINVAL;
    return rename_common(p, a.olddirfd(), a.oldpath(), a.newdirfd(), a.newpath(), static_cast<unsigned>(a.flags()));
}

namespace {

int64_t symlink_common(Process& p, uint64_t target_ptr, int dirfd, uint64_t path_ptr) {
    auto target = p.mem().read_cstring(target_ptr, PATH_MAX - 1);
    if (!target) return -target.error().sys_errno;
    if (target->empty()) return -ENOENT;
    return in_parent(p, dirfd, path_ptr, true, [&](int parent, const std::string& name, bool) -> int64_t {
        return ::symlinkat(target->c_str(), parent, name.c_str()) < 0 ? -errno : 0;
    });
}
}  // namespace

int64_t sys_symlink(Process& p, SymlinkArgs a) { return symlink_common(p, a.target(), AT_FDCWD, a.linkpath()); }

int64_t sys_symlinkat(Process& p, SymlinkatArgs a) { return symlink_common(p, a.target(), a.newdirfd(), a.linkpath()); }

namespace {

// Metadata changes go through an O_PATH descriptor resolved in the sandbox.
template <class Op>
int64_t on_resolved_for_write(Process& p, int dirfd, uint64_t path_ptr, int flags, Op&& op) {
    std::string path;
    if (int64_t r = p.read_path(dirfd, path_ptr, path, flags & AT_EMPTY_PATH); r < 0) return r;
    if (!path.empty() && p.sandbox().read_only(path)) return -EROFS;
    Fd holder;
    int host;
    if (int64_t r = resolve(p, dirfd, path_ptr, flags, holder, host); r < 0) return r;
    return op(host);
}

// A descriptor's file lies on the read-only root: metadata changes through
// the descriptor must fail like those through a path (the host would allow
// them, since the VMM may own the file).
bool on_read_only_mount(Process& p, const OpenFile& f) {
    if (f.stdio >= 0 || f.guest_path.empty()) return false;  // stdio and pipes: not sandbox files
    return p.sandbox().read_only(f.guest_path);
}

// Changes the mode of the file an O_PATH descriptor names (fchmod refuses
// O_PATH with EBADF). fchmodat2 does it on Linux 6.6 and later; older
// kernels (Debian 12's 6.1) answer ENOSYS, and chmod through the
// descriptor's /proc/self/fd link reaches the same file (glibc's fallback
// too). `resolve` followed any final symlink, so the link names no symlink.
int64_t chmod_path_fd(int fd, mode_t mode) {
    static std::atomic<bool> no_fchmodat2{false};
    if (!no_fchmodat2.load(std::memory_order_relaxed)) {
        if (::syscall(SYS_fchmodat2, fd, "", mode, AT_EMPTY_PATH) == 0) return 0;
        if (errno != ENOSYS) return -errno;
        no_fchmodat2.store(true, std::memory_order_relaxed);
    }
    char link[32];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    return ::fchmodat(AT_FDCWD, link, mode, 0) < 0 ? -errno : 0;  // the seccomp filter allows fchmodat
}

int64_t chmod_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t mode) {
    return on_resolved_for_write(p, dirfd, path_ptr, 0, [&](int host) {
        return chmod_path_fd(host, static_cast<mode_t>(mode & kGuestModeMask));
    });
}

}  // namespace

int64_t sys_fchmodat(Process& p, AtPathModeArgs a) { return chmod_common(p, a.dirfd(), a.path(), a.mode()); }
int64_t sys_chmod(Process& p, PathModeArgs a) { return chmod_common(p, AT_FDCWD, a.path(), a.mode()); }

int64_t sys_fchmod(Process& p, FdModeArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (on_read_only_mount(p, *f)) return -EROFS;
    return ::fchmod(f->host.get(), static_cast<mode_t>(a.mode() & kGuestModeMask)) < 0 ? -errno : 0;
}

namespace {

// Ownership changes: the guest is an ordinary user of its files. It may
// "change" them to its own uid/gid (what `cp -p` and `tar -x` do), never give
// them away: a VMM running as root must not let a guest plant files owned by
// other users in a writable host directory.
int64_t check_owner(Process& p, uint64_t uid, uint64_t gid) {
    // uid_t is 32 bits: the kernel ignores the upper half of the register.
    uint32_t u = static_cast<uint32_t>(uid), g = static_cast<uint32_t>(gid);
    bool uid_ok = u == UINT32_MAX || u == p.options().uid;
    bool gid_ok = g == UINT32_MAX || g == p.options().gid;
    return uid_ok && gid_ok ? 0 : -EPERM;
}

int64_t chown_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t uid, uint64_t gid, int flags) {
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return -EINVAL;
    return on_resolved_for_write(p, dirfd, path_ptr, flags, [&](int host) -> int64_t {
        if (int64_t r = check_owner(p, uid, gid); r < 0) return r;
        return ::fchownat(host, "", static_cast<uid_t>(uid), static_cast<gid_t>(gid), AT_EMPTY_PATH) < 0 ? -errno : 0;
    });
}
}  // namespace

int64_t sys_chown(Process& p, ChownArgs a) { return chown_common(p, AT_FDCWD, a.path(), a.uid(), a.gid(), 0); }

int64_t sys_lchown(Process& p, ChownArgs a) {
    return chown_common(p, AT_FDCWD, a.path(), a.uid(), a.gid(), AT_SYMLINK_NOFOLLOW);
}

int64_t sys_fchownat(Process& p, FchownatArgs a) {
    return chown_common(p, a.dirfd(), a.path(), a.uid(), a.gid(), static_cast<int>(a.flags()));
}

int64_t sys_fchown(Process& p, FdOwnerArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (on_read_only_mount(p, *f)) return -EROFS;
    if (int64_t r = check_owner(p, a.uid(), a.gid()); r < 0) return r;
    return ::fchown(f->host.get(), static_cast<uid_t>(a.uid()), static_cast<gid_t>(a.gid())) < 0 ? -errno : 0;
}

int64_t sys_utimensat(Process& p, UtimensatArgs a) {
    int flags = static_cast<int>(a.flags());
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return -EINVAL;
    timespec times[2];
    if (a.times() && !p.mem().read(a.times(), times, sizeof times)) return -EFAULT;
    if (a.path() == 0) {  // futimens(fd, ...)
        OpenFile* f = file_of(p, a.fd());
        if (!f) return -EBADF;
        if (on_read_only_mount(p, *f)) return -EROFS;
        return ::futimens(f->host.get(), a.times() ? times : nullptr) < 0 ? -errno : 0;
    }
    return on_resolved_for_write(p, a.dirfd(), a.path(), flags, [&](int host) -> int64_t {
        return ::utimensat(host, "", a.times() ? times : nullptr, AT_EMPTY_PATH) < 0 ? -errno : 0;
    });
}

}  // namespace vessel::thin
