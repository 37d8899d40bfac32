// File-system and descriptor calls.
//
// Rule: a guest path is first resolved to a host descriptor inside the
// sandbox (Sandbox::open/open_path/open_parent, all RESOLVE_IN_ROOT), and the
// operation is then applied to that descriptor (AT_EMPTY_PATH) or to a single
// name in a pinned parent directory. No host call ever follows a
// guest-controlled symlink on its own.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <termios.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "thin/process.h"

#ifndef SYS_fchmodat2
#define SYS_fchmodat2 452  // Linux 6.6; older headers lack it
#endif

namespace vessel::thin {
namespace {

constexpr uint64_t kMaxIo = 1ull << 30;   // cap of one read/write, like Linux's MAX_RW_COUNT
constexpr unsigned kIovBatch = 1024;
// Modes a guest may set on host files. Set-user/group-ID bits are dropped, as
// on a nosuid mount: a guest must not plant a setuid binary (owned by the
// VMM's user, possibly root) in a host directory it was given with --rw.
constexpr unsigned kGuestModeMask = 01777;

OpenFile* file_of(Process& p, uint64_t fd) {
    if (fd > INT32_MAX) return nullptr;
    auto* e = p.fds().get(static_cast<int>(fd));
    return e ? e->file.get() : nullptr;
}

// Moves data between a host fd and guest memory page by page, batching the
// pages into readv/writev calls. `to_guest`: a read into guest memory.
int64_t transfer(Process& p, int host_fd, uint64_t va, uint64_t len, bool to_guest, int64_t offset) {
    len = std::min(len, kMaxIo);
    uint64_t done = 0;
    std::vector<iovec> iov;
    iov.reserve(kIovBatch);
    while (done < len) {
        iov.clear();
        uint64_t batch = 0;
        uint64_t want = std::min<uint64_t>(len - done, kIovBatch * memory::kPageSize - memory::kPageSize);
        bool ok = p.mem().for_each_chunk(va + done, want, to_guest, [&](uint8_t* h, uint64_t n) {
            iov.push_back({h, n});
            batch += n;
        });
        if (!ok && iov.empty()) return done ? static_cast<int64_t>(done) : -EFAULT;
        ssize_t n;
        if (offset >= 0)
            n = to_guest ? ::preadv(host_fd, iov.data(), static_cast<int>(iov.size()), offset + done)
                         : ::pwritev(host_fd, iov.data(), static_cast<int>(iov.size()), offset + done);
        else
            n = to_guest ? ::readv(host_fd, iov.data(), static_cast<int>(iov.size()))
                         : ::writev(host_fd, iov.data(), static_cast<int>(iov.size()));
        if (n < 0) return done ? static_cast<int64_t>(done) : -errno;
        done += static_cast<uint64_t>(n);
        if (static_cast<uint64_t>(n) < batch || !ok || n == 0) break;
    }
    return static_cast<int64_t>(done);
}

int64_t io_common(Process& p, const SyscallArgs& a, bool to_guest, bool positional) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    if (f->directory && to_guest) return -EISDIR;
    if (positional && static_cast<int64_t>(a.a[3]) < 0) return -EINVAL;
    if (a.a[2] == 0) return 0;
    int64_t n = transfer(p, f->host.get(), a.a[1], a.a[2], to_guest, positional ? static_cast<int64_t>(a.a[3]) : -1);
    p.count_io(to_guest, n);
    return n;
}

int64_t sys_read(Process& p, const SyscallArgs& a) {
    int64_t n = io_common(p, a, true, false);
    if (OpenFile* f = file_of(p, a.a[0]); f && n > 0) p.fill_read_ahead(static_cast<int>(a.a[0]), *f, a.a[1], a.a[2], n);
    return n;
}
int64_t sys_write(Process& p, const SyscallArgs& a) { return io_common(p, a, false, false); }
int64_t sys_pread64(Process& p, const SyscallArgs& a) { return io_common(p, a, true, true); }
int64_t sys_pwrite64(Process& p, const SyscallArgs& a) { return io_common(p, a, false, true); }

int64_t vectored(Process& p, const SyscallArgs& a, bool to_guest) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    if (a.a[2] > IOV_MAX) return -EINVAL;
    std::vector<iovec> guest(a.a[2]);
    if (!guest.empty() && !p.mem().read(a.a[1], guest.data(), guest.size() * sizeof(iovec))) return -EFAULT;
    uint64_t total = 0;
    for (const auto& v : guest) {
        if (v.iov_len > kMaxIo) return -EINVAL;
        total += v.iov_len;
        if (total > kMaxIo) return -EINVAL;
    }
    int64_t done = 0;
    for (const auto& v : guest) {
        if (!v.iov_len) continue;
        int64_t n = transfer(p, f->host.get(), reinterpret_cast<uint64_t>(v.iov_base), v.iov_len, to_guest, -1);
        p.count_io(to_guest, n);
        if (n < 0) return done ? done : n;
        done += n;
        if (static_cast<uint64_t>(n) < v.iov_len) break;
    }
    return done;
}

int64_t sys_readv(Process& p, const SyscallArgs& a) { return vectored(p, a, true); }
int64_t sys_writev(Process& p, const SyscallArgs& a) { return vectored(p, a, false); }

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

int64_t open_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t flags, uint64_t mode) {
    std::string path;
    if (int64_t r = p.read_path(dirfd, path_ptr, path); r < 0) return r;
    int host_flags = static_cast<int>(flags) & ~O_CLOEXEC;
    if (host_flags & O_CREAT && !path.empty() && path.back() == '/') return -EISDIR;
    auto fd = p.sandbox().open(path, host_flags, static_cast<unsigned>(mode) & ~p.umask() & kGuestModeMask);
    if (!fd) return -fd.error().sys_errno;
    return install(p, std::move(*fd), strip_slash(path), flags & O_CLOEXEC);
}

int64_t sys_open(Process& p, const SyscallArgs& a) { return open_common(p, AT_FDCWD, a.a[0], a.a[1], a.a[2]); }
int64_t sys_creat(Process& p, const SyscallArgs& a) {
    return open_common(p, AT_FDCWD, a.a[0], O_CREAT | O_WRONLY | O_TRUNC, a.a[1]);
}
int64_t sys_openat(Process& p, const SyscallArgs& a) {
    return open_common(p, static_cast<int>(a.a[0]), a.a[1], a.a[2], a.a[3]);
}

int64_t sys_close(Process& p, const SyscallArgs& a) {
    return a.a[0] > INT32_MAX ? -EBADF : p.fds().close(static_cast<int>(a.a[0]));
}

int64_t sys_lseek(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    off_t r = ::lseek(f->host.get(), static_cast<off_t>(a.a[1]), static_cast<int>(a.a[2]));
    return r < 0 ? -errno : r;
}

// A host descriptor for (dirfd, path): the file itself (O_PATH), or the
// descriptor's own file for AT_EMPTY_PATH. `holder` keeps a fresh one open.
int64_t resolve(Process& p, int dirfd, uint64_t path_ptr, int flags, Fd& holder, int& host_fd) {
    std::string path;
    bool empty_ok = flags & AT_EMPTY_PATH;
    if (int64_t r = p.read_path(dirfd, path_ptr, path, empty_ok); r < 0) return r;
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
    auto fd = p.sandbox().open_path(path, flags & AT_SYMLINK_NOFOLLOW);
    if (!fd) return -fd.error().sys_errno;
    holder = std::move(*fd);
    host_fd = holder.get();
    return 0;
}

int64_t stat_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t buf, int flags) {
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT)) return -EINVAL;
    Fd holder;
    int host;
    if (int64_t r = resolve(p, dirfd, path_ptr, flags, holder, host); r < 0) return r;
    struct stat st;
    if (::fstatat(host, "", &st, AT_EMPTY_PATH) < 0) return -errno;
    return p.mem().write_obj(buf, st) ? 0 : -EFAULT;
}

int64_t sys_stat(Process& p, const SyscallArgs& a) { return stat_common(p, AT_FDCWD, a.a[0], a.a[1], 0); }
int64_t sys_lstat(Process& p, const SyscallArgs& a) {
    return stat_common(p, AT_FDCWD, a.a[0], a.a[1], AT_SYMLINK_NOFOLLOW);
}
int64_t sys_fstat(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    struct stat st;
    if (::fstat(f->host.get(), &st) < 0) return -errno;
    return p.mem().write_obj(a.a[1], st) ? 0 : -EFAULT;
}
int64_t sys_newfstatat(Process& p, const SyscallArgs& a) {
    return stat_common(p, static_cast<int>(a.a[0]), a.a[1], a.a[2], static_cast<int>(a.a[3]));
}

int64_t sys_statx(Process& p, const SyscallArgs& a) {
    int flags = static_cast<int>(a.a[2]);
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)) return -EINVAL;
    Fd holder;
    int host;
    if (int64_t r = resolve(p, static_cast<int>(a.a[0]), a.a[1], flags, holder, host); r < 0) return r;
    struct statx sx;
    if (::statx(host, "", AT_EMPTY_PATH | (flags & AT_STATX_SYNC_TYPE), static_cast<unsigned>(a.a[3]), &sx) < 0)
        return -errno;
    return p.mem().write_obj(a.a[4], sx) ? 0 : -EFAULT;
}

int64_t sys_getdents64(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    if (!f->directory) return -ENOTDIR;
    std::vector<uint8_t> buf(std::min<uint64_t>(a.a[2], 1 << 20));
    long n = ::syscall(SYS_getdents64, f->host.get(), buf.data(), buf.size());
    if (n < 0) return -errno;
    return p.mem().write(a.a[1], buf.data(), static_cast<uint64_t>(n)) ? n : -EFAULT;
}

int64_t readlink_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t buf, uint64_t size) {
    if (static_cast<int64_t>(size) <= 0) return -EINVAL;
    Fd holder;
    int host;
    // An empty path names `dirfd` itself (never the cwd), as in Linux.
    auto name = p.mem().read_cstring(path_ptr, PATH_MAX - 1);
    if (!name) return -name.error().sys_errno;
    bool empty_path = name->empty();
    if (empty_path && dirfd == AT_FDCWD) return -ENOENT;
    if (int64_t r = resolve(p, dirfd, path_ptr, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH, holder, host); r < 0) return r;
    std::vector<char> out(std::min<uint64_t>(size, PATH_MAX));
    ssize_t n = ::readlinkat(host, "", out.data(), out.size());
    if (n < 0) {
        // readlinkat(fd, "") on a non-symlink says ENOENT; a guest that named
        // the file by a non-empty path must see readlink(2)'s EINVAL instead.
        int e = errno;
        struct stat st;
        if (e == ENOENT && !empty_path && ::fstat(host, &st) == 0 && !S_ISLNK(st.st_mode)) return -EINVAL;
        return -e;
    }
    return p.mem().write(buf, out.data(), static_cast<uint64_t>(n)) ? n : -EFAULT;
}

int64_t sys_readlink(Process& p, const SyscallArgs& a) { return readlink_common(p, AT_FDCWD, a.a[0], a.a[1], a.a[2]); }
int64_t sys_readlinkat(Process& p, const SyscallArgs& a) {
    return readlink_common(p, static_cast<int>(a.a[0]), a.a[1], a.a[2], a.a[3]);
}

int64_t access_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t mode, int flags) {
    if (mode & ~uint64_t(R_OK | W_OK | X_OK)) return -EINVAL;
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EACCESS | AT_EMPTY_PATH)) return -EINVAL;
    std::string path;
    if (int64_t r = p.read_path(dirfd, path_ptr, path, flags & AT_EMPTY_PATH); r < 0) return r;
    Fd holder;
    int host;
    if (int64_t r = resolve(p, dirfd, path_ptr, flags, holder, host); r < 0) return r;
    if (::syscall(SYS_faccessat2, host, "", static_cast<int>(mode), AT_EMPTY_PATH | (flags & AT_EACCESS)) < 0)
        return -errno;
    if ((mode & W_OK) && !path.empty() && p.sandbox().read_only(path)) return -EROFS;
    return 0;
}

int64_t sys_access(Process& p, const SyscallArgs& a) { return access_common(p, AT_FDCWD, a.a[0], a.a[1], 0); }
int64_t sys_faccessat(Process& p, const SyscallArgs& a) {
    return access_common(p, static_cast<int>(a.a[0]), a.a[1], a.a[2], 0);
}
int64_t sys_faccessat2(Process& p, const SyscallArgs& a) {
    return access_common(p, static_cast<int>(a.a[0]), a.a[1], a.a[2], static_cast<int>(a.a[3]));
}

int64_t sys_getcwd(Process& p, const SyscallArgs& a) {
    const std::string& cwd = p.cwd();
    if (a.a[1] < cwd.size() + 1) return -ERANGE;
    return p.mem().write(a.a[0], cwd.c_str(), cwd.size() + 1) ? static_cast<int64_t>(cwd.size() + 1) : -EFAULT;
}

int64_t change_dir(Process& p, int host_fd, const std::string& path) {
    struct stat st;
    if (::fstat(host_fd, &st) < 0) return -errno;
    if (!S_ISDIR(st.st_mode)) return -ENOTDIR;
    if (::syscall(SYS_faccessat2, host_fd, "", X_OK, AT_EMPTY_PATH) < 0) return -errno;
    p.cwd() = strip_slash(path);
    return 0;
}

int64_t sys_chdir(Process& p, const SyscallArgs& a) {
    std::string path;
    if (int64_t r = p.read_path(AT_FDCWD, a.a[0], path); r < 0) return r;
    auto fd = p.sandbox().open_path(path, false);
    if (!fd) return -fd.error().sys_errno;
    return change_dir(p, fd->get(), path);
}

int64_t sys_fchdir(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    if (f->guest_path.empty()) return -ENOTDIR;
    return change_dir(p, f->host.get(), f->guest_path);
}

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
        return ::mkdirat(parent, name.c_str(), static_cast<mode_t>(mode & kGuestModeMask & ~p.umask())) < 0 ? -errno : 0;
    });
    // "/" and mount points have no parent to create them in (EBUSY), but they
    // exist, and Linux says EEXIST: `mkdir -p /w/x` relies on it.
    return r == -EBUSY ? -EEXIST : r;
}
int64_t sys_mkdir(Process& p, const SyscallArgs& a) { return mkdir_common(p, AT_FDCWD, a.a[0], a.a[1]); }
int64_t sys_mkdirat(Process& p, const SyscallArgs& a) {
    return mkdir_common(p, static_cast<int>(a.a[0]), a.a[1], a.a[2]);
}

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
int64_t sys_unlink(Process& p, const SyscallArgs& a) { return unlink_common(p, AT_FDCWD, a.a[0], 0); }
int64_t sys_rmdir(Process& p, const SyscallArgs& a) { return unlink_common(p, AT_FDCWD, a.a[0], AT_REMOVEDIR); }
int64_t sys_unlinkat(Process& p, const SyscallArgs& a) {
    return unlink_common(p, static_cast<int>(a.a[0]), a.a[1], static_cast<int>(a.a[2]));
}

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
int64_t sys_rename(Process& p, const SyscallArgs& a) { return rename_common(p, AT_FDCWD, a.a[0], AT_FDCWD, a.a[1], 0); }
int64_t sys_renameat(Process& p, const SyscallArgs& a) {
    return rename_common(p, static_cast<int>(a.a[0]), a.a[1], static_cast<int>(a.a[2]), a.a[3], 0);
}
int64_t sys_renameat2(Process& p, const SyscallArgs& a) {
    if (a.a[4] & ~uint64_t(RENAME_NOREPLACE | RENAME_EXCHANGE)) return -EINVAL;
    return rename_common(p, static_cast<int>(a.a[0]), a.a[1], static_cast<int>(a.a[2]), a.a[3],
                         static_cast<unsigned>(a.a[4]));
}

int64_t symlink_common(Process& p, uint64_t target_ptr, int dirfd, uint64_t path_ptr) {
    auto target = p.mem().read_cstring(target_ptr, PATH_MAX - 1);
    if (!target) return -target.error().sys_errno;
    if (target->empty()) return -ENOENT;
    return in_parent(p, dirfd, path_ptr, true, [&](int parent, const std::string& name, bool) -> int64_t {
        return ::symlinkat(target->c_str(), parent, name.c_str()) < 0 ? -errno : 0;
    });
}
int64_t sys_symlink(Process& p, const SyscallArgs& a) { return symlink_common(p, a.a[0], AT_FDCWD, a.a[1]); }
int64_t sys_symlinkat(Process& p, const SyscallArgs& a) {
    return symlink_common(p, a.a[0], static_cast<int>(a.a[1]), a.a[2]);
}

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

int64_t sys_fchmodat(Process& p, const SyscallArgs& a) {
    return on_resolved_for_write(p, static_cast<int>(a.a[0]), a.a[1], 0, [&](int host) -> int64_t {
        return ::syscall(SYS_fchmodat2, host, "", static_cast<mode_t>(a.a[2] & kGuestModeMask), AT_EMPTY_PATH) < 0 ? -errno : 0;
    });
}
int64_t sys_chmod(Process& p, const SyscallArgs& a) {
    SyscallArgs b{a.nr, {static_cast<uint64_t>(AT_FDCWD), a.a[0], a.a[1], 0, 0, 0}};
    return sys_fchmodat(p, b);
}
int64_t sys_fchmod(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    if (on_read_only_mount(p, *f)) return -EROFS;
    return ::fchmod(f->host.get(), static_cast<mode_t>(a.a[1] & kGuestModeMask)) < 0 ? -errno : 0;
}

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
        return ::fchownat(host, "", static_cast<uid_t>(uid), static_cast<gid_t>(gid), AT_EMPTY_PATH) < 0 ? -errno
                                                                                                        : 0;
    });
}
int64_t sys_chown(Process& p, const SyscallArgs& a) { return chown_common(p, AT_FDCWD, a.a[0], a.a[1], a.a[2], 0); }
int64_t sys_lchown(Process& p, const SyscallArgs& a) {
    return chown_common(p, AT_FDCWD, a.a[0], a.a[1], a.a[2], AT_SYMLINK_NOFOLLOW);
}
int64_t sys_fchownat(Process& p, const SyscallArgs& a) {
    return chown_common(p, static_cast<int>(a.a[0]), a.a[1], a.a[2], a.a[3], static_cast<int>(a.a[4]));
}
int64_t sys_fchown(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    if (on_read_only_mount(p, *f)) return -EROFS;
    if (int64_t r = check_owner(p, a.a[1], a.a[2]); r < 0) return r;
    return ::fchown(f->host.get(), static_cast<uid_t>(a.a[1]), static_cast<gid_t>(a.a[2])) < 0 ? -errno : 0;
}

int64_t sys_utimensat(Process& p, const SyscallArgs& a) {
    int flags = static_cast<int>(a.a[3]);
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) return -EINVAL;
    timespec times[2];
    if (a.a[2] && !p.mem().read(a.a[2], times, sizeof times)) return -EFAULT;
    if (a.a[1] == 0) {  // futimens(fd, ...)
        OpenFile* f = file_of(p, a.a[0]);
        if (!f) return -EBADF;
        if (on_read_only_mount(p, *f)) return -EROFS;
        return ::futimens(f->host.get(), a.a[2] ? times : nullptr) < 0 ? -errno : 0;
    }
    return on_resolved_for_write(p, static_cast<int>(a.a[0]), a.a[1], flags, [&](int host) -> int64_t {
        return ::utimensat(host, "", a.a[2] ? times : nullptr, AT_EMPTY_PATH) < 0 ? -errno : 0;
    });
}

int64_t sys_ftruncate(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    return ::ftruncate(f->host.get(), static_cast<off_t>(a.a[1])) < 0 ? -errno : 0;
}

int64_t sys_fsync(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    return ::fsync(f->host.get()) < 0 ? -errno : 0;
}
int64_t sys_fdatasync(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    return ::fdatasync(f->host.get()) < 0 ? -errno : 0;
}

int64_t sys_dup(Process& p, const SyscallArgs& a) {
    auto* e = a.a[0] > INT32_MAX ? nullptr : p.fds().get(static_cast<int>(a.a[0]));
    if (!e) return -EBADF;
    return p.fds().install(e->file, false);
}

int64_t dup3_common(Process& p, uint64_t oldfd, uint64_t newfd, uint64_t flags, bool is_dup2) {
    if (flags & ~uint64_t(O_CLOEXEC)) return -EINVAL;
    auto* e = oldfd > INT32_MAX ? nullptr : p.fds().get(static_cast<int>(oldfd));
    if (!e) return -EBADF;
    if (newfd >= static_cast<uint64_t>(FdTable::kMaxFds)) return -EBADF;
    if (oldfd == newfd) return is_dup2 ? static_cast<int64_t>(newfd) : -EINVAL;
    auto file = e->file;
    return p.fds().install_at(static_cast<int>(newfd), std::move(file), flags & O_CLOEXEC);
}
int64_t sys_dup2(Process& p, const SyscallArgs& a) { return dup3_common(p, a.a[0], a.a[1], 0, true); }
int64_t sys_dup3(Process& p, const SyscallArgs& a) { return dup3_common(p, a.a[0], a.a[1], a.a[2], false); }

int64_t sys_fcntl(Process& p, const SyscallArgs& a) {
    auto* e = a.a[0] > INT32_MAX ? nullptr : p.fds().get(static_cast<int>(a.a[0]));
    if (!e) return -EBADF;
    int host = e->file->host.get();
    switch (a.a[1]) {
        case F_DUPFD:
        case F_DUPFD_CLOEXEC:
            if (a.a[2] >= static_cast<uint64_t>(FdTable::kMaxFds)) return -EINVAL;
            return p.fds().install(e->file, a.a[1] == F_DUPFD_CLOEXEC, static_cast<int>(a.a[2]));
        case F_GETFD: return e->cloexec ? FD_CLOEXEC : 0;
        case F_SETFD: e->cloexec = a.a[2] & FD_CLOEXEC; return 0;
        case F_GETFL: {
            int r = ::fcntl(host, F_GETFL);
            return r < 0 ? -errno : (r & ~O_CLOEXEC);
        }
        case F_SETFL: {
            int keep = O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME;
            return ::fcntl(host, F_SETFL, static_cast<int>(a.a[2]) & keep) < 0 ? -errno : 0;
        }
        case F_GETLK:
        case F_SETLK:
        case F_SETLKW: {
            struct flock fl;
            if (!p.mem().read_obj(a.a[2], fl)) return -EFAULT;
            if (::fcntl(host, static_cast<int>(a.a[1]), &fl) < 0) return -errno;
            if (a.a[1] == F_GETLK && !p.mem().write_obj(a.a[2], fl)) return -EFAULT;
            return 0;
        }
        default: return -EINVAL;
    }
}

int64_t sys_pipe2(Process& p, const SyscallArgs& a) {
    if (a.a[1] & ~uint64_t(O_CLOEXEC | O_NONBLOCK | O_DIRECT)) return -EINVAL;
    int host[2];
    if (::pipe2(host, O_CLOEXEC | (static_cast<int>(a.a[1]) & (O_NONBLOCK | O_DIRECT))) < 0) return -errno;
    Fd r(host[0]), w(host[1]);
    bool cloexec = a.a[1] & O_CLOEXEC;
    auto rf = std::make_shared<OpenFile>();
    rf->host = std::move(r);
    auto wf = std::make_shared<OpenFile>();
    wf->host = std::move(w);
    int gr = p.fds().install(std::move(rf), cloexec);
    if (gr < 0) return gr;
    int gw = p.fds().install(std::move(wf), cloexec);
    if (gw < 0) {
        p.fds().close(gr);
        return gw;
    }
    int32_t out[2] = {gr, gw};
    if (!p.mem().write(a.a[0], out, sizeof out)) {
        p.fds().close(gr);
        p.fds().close(gw);
        return -EFAULT;
    }
    return 0;
}
int64_t sys_pipe(Process& p, const SyscallArgs& a) {
    SyscallArgs b{a.nr, {a.a[0], 0, 0, 0, 0, 0}};
    return sys_pipe2(p, b);
}

int64_t sys_ioctl(Process& p, const SyscallArgs& a) {
    OpenFile* f = file_of(p, a.a[0]);
    if (!f) return -EBADF;
    int host = f->host.get();
    auto* e = p.fds().get(static_cast<int>(a.a[0]));
    switch (a.a[1]) {
        case FIOCLEX: e->cloexec = true; return 0;
        case FIONCLEX: e->cloexec = false; return 0;
        case FIONREAD: {
            int n;
            if (::ioctl(host, FIONREAD, &n) < 0) return -errno;
            return p.mem().write_obj(a.a[2], n) ? 0 : -EFAULT;
        }
        default: break;
    }
    if (!::isatty(host)) return -ENOTTY;
    // Terminal requests carry the kernel's 36-byte termios, or a winsize.
    uint8_t buf[64] = {};
    switch (a.a[1]) {
        case TCGETS:
        case TIOCGWINSZ: {
            if (::ioctl(host, a.a[1], buf) < 0) return -errno;
            uint64_t n = a.a[1] == TCGETS ? 36 : sizeof(winsize);
            return p.mem().write(a.a[2], buf, n) ? 0 : -EFAULT;
        }
        case TCSETS:
        case TCSETSW:
        case TCSETSF:
            if (!p.mem().read(a.a[2], buf, 36)) return -EFAULT;
            return ::ioctl(host, a.a[1], buf) < 0 ? -errno : 0;
        case TIOCGPGRP: {
            int32_t pgrp = 1;
            return p.mem().write_obj(a.a[2], pgrp) ? 0 : -EFAULT;
        }
        default: return -ENOTTY;
    }
}

}  // namespace

void Process::fill_read_ahead(int fd, OpenFile& file, uint64_t buf, uint64_t count, int64_t got) {
    // Only a full, small read of a regular file suggests more small reads.
    if (!entry_ || !entry_->shared().enabled || static_cast<uint64_t>(got) != count || count > kReadAheadMaxRead ||
        windows_wasted_ >= kReadAheadMaxWasted)
        return;
    struct stat st;
    if (::fstat(file.host.get(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    // The entry code writes into [lo, hi) without asking: a VMA that is
    // writable now. Any call that changes the memory map settles first.
    const memory::Vma* v = as_->find_vma(buf);
    if (!v || !(v->prot & memory::kProtWrite) || buf + count > v->end) return;
    if (!is_window(window_va_)) {  // never mapped, or the guest unmapped it
        auto va = as_->find_free(kReadAheadWindow);
        if (!va || !as_->map_fixed(*va, kReadAheadWindow, memory::kProtRead | memory::kProtWrite, kReadAheadName))
            return;
        window_va_ = *va;
    }
    int64_t n = transfer(*this, file.host.get(), window_va_, window_size_, true, -1);
    if (n <= 0) return;
    count_io(true, n);
    GuestShared& s = entry_->shared();
    s.win_fd = static_cast<uint64_t>(fd);
    s.win_va = window_va_;
    s.win_len = static_cast<uint64_t>(n);
    s.win_pos = 0;
    s.safe_lo = v->start;
    s.safe_hi = v->end;
    entry_->note_shared_write();
}

void register_file_syscalls(SyscallTable& t) {
    t.add(SYS_read, "read", "fpu", sys_read);
    t.add(SYS_write, "write", "fbu", sys_write);
    t.add(SYS_readv, "readv", "fpu", sys_readv);
    t.add(SYS_writev, "writev", "fpu", sys_writev);
    t.add(SYS_pread64, "pread64", "fpui", sys_pread64);
    t.add(SYS_pwrite64, "pwrite64", "fbui", sys_pwrite64);
    t.add(SYS_open, "open", "sxo", sys_open);
    t.add(SYS_creat, "creat", "so", sys_creat);
    t.add(SYS_openat, "openat", "fsxo", sys_openat);
    t.add(SYS_close, "close", "f", sys_close);
    t.add(SYS_lseek, "lseek", "fii", sys_lseek);
    t.add(SYS_stat, "stat", "sp", sys_stat);
    t.add(SYS_lstat, "lstat", "sp", sys_lstat);
    t.add(SYS_fstat, "fstat", "fp", sys_fstat);
    t.add(SYS_newfstatat, "newfstatat", "fspx", sys_newfstatat);
    t.add(SYS_statx, "statx", "fsxxp", sys_statx);
    t.add(SYS_getdents64, "getdents64", "fpu", sys_getdents64);
    t.add(SYS_readlink, "readlink", "spu", sys_readlink);
    t.add(SYS_readlinkat, "readlinkat", "fspu", sys_readlinkat);
    t.add(SYS_access, "access", "so", sys_access);
    t.add(SYS_faccessat, "faccessat", "fso", sys_faccessat);
    t.add(SYS_faccessat2, "faccessat2", "fsox", sys_faccessat2);
    t.add(SYS_getcwd, "getcwd", "pu", sys_getcwd);
    t.add(SYS_chdir, "chdir", "s", sys_chdir);
    t.add(SYS_fchdir, "fchdir", "f", sys_fchdir);
    t.add(SYS_mkdir, "mkdir", "so", sys_mkdir);
    t.add(SYS_mkdirat, "mkdirat", "fso", sys_mkdirat);
    t.add(SYS_unlink, "unlink", "s", sys_unlink);
    t.add(SYS_unlinkat, "unlinkat", "fsx", sys_unlinkat);
    t.add(SYS_rmdir, "rmdir", "s", sys_rmdir);
    t.add(SYS_rename, "rename", "ss", sys_rename);
    t.add(SYS_renameat, "renameat", "fsfs", sys_renameat);
    t.add(SYS_renameat2, "renameat2", "fsfsx", sys_renameat2);
    t.add(SYS_symlink, "symlink", "ss", sys_symlink);
    t.add(SYS_symlinkat, "symlinkat", "sfs", sys_symlinkat);
    t.add(SYS_chmod, "chmod", "so", sys_chmod);
    t.add(SYS_fchmod, "fchmod", "fo", sys_fchmod);
    t.add(SYS_fchmodat, "fchmodat", "fso", sys_fchmodat);
    t.add(SYS_chown, "chown", "suu", sys_chown);
    t.add(SYS_lchown, "lchown", "suu", sys_lchown);
    t.add(SYS_fchown, "fchown", "fuu", sys_fchown);
    t.add(SYS_fchownat, "fchownat", "fsuux", sys_fchownat);
    t.add(SYS_utimensat, "utimensat", "fspx", sys_utimensat);
    t.add(SYS_ftruncate, "ftruncate", "fi", sys_ftruncate);
    t.add(SYS_fsync, "fsync", "f", sys_fsync);
    t.add(SYS_fdatasync, "fdatasync", "f", sys_fdatasync);
    t.add(SYS_dup, "dup", "f", sys_dup);
    t.add(SYS_dup2, "dup2", "ff", sys_dup2);
    t.add(SYS_dup3, "dup3", "ffx", sys_dup3);
    t.add(SYS_fcntl, "fcntl", "fip", sys_fcntl);
    t.add(SYS_pipe, "pipe", "p", sys_pipe);
    t.add(SYS_pipe2, "pipe2", "px", sys_pipe2);
    t.add(SYS_ioctl, "ioctl", "fxp", sys_ioctl);
}

}  // namespace vessel::thin
