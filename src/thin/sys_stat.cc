// Calls that look at files without changing them: stat and friends,
// directory listings, symlink texts and permission checks.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "thin/process.h"
#include "thin/procfs.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

int64_t stat_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t buf, int flags) {
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT)) return -EINVAL;
    Fd holder;
    int host;
    if (int64_t r = resolve(p, dirfd, path_ptr, flags, holder, host); r < 0) return r;
    struct stat st;
    if (::fstatat(host, "", &st, AT_EMPTY_PATH) < 0) return -errno;
    return p.mem().write_obj(buf, st) ? 0 : -EFAULT;
}

}  // namespace

int64_t sys_stat(Process& p, StatArgs a) { return stat_common(p, AT_FDCWD, a.path(), a.buf(), 0); }

int64_t sys_lstat(Process& p, StatArgs a) { return stat_common(p, AT_FDCWD, a.path(), a.buf(), AT_SYMLINK_NOFOLLOW); }

int64_t sys_fstat(Process& p, IoArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    struct stat st;
    if (::fstat(f->host.get(), &st) < 0) return -errno;
    return p.mem().write_obj(a.buf(), st) ? 0 : -EFAULT;
}

int64_t sys_newfstatat(Process& p, FstatatArgs a) {
    return stat_common(p, a.dirfd(), a.path(), a.buf(), static_cast<int>(a.flags()));
}

namespace {

// The host's statfs of a file the guest sees, with ST_RDONLY where the
// guest's mount is read-only (--root), as Linux reports a read-only mount.
int64_t write_statfs(Process& p, uint64_t buf, int host, const std::string& guest_path) {
    struct statfs st;
    if (::fstatfs(host, &st) < 0) return -errno;
    if (guest_path.starts_with('/') && p.sandbox().read_only(guest_path)) st.f_flags |= ST_RDONLY;
    return p.mem().write_obj(buf, st) ? 0 : -EFAULT;
}

}  // namespace

int64_t sys_statfs(Process& p, StatArgs a) {
    std::string path;
    if (int64_t r = p.read_path(AT_FDCWD, a.path(), path); r < 0) return r;
    Fd holder;
    int host;
    if (int64_t r = resolve_path(p, AT_FDCWD, path, 0, holder, host); r < 0) return r;
    return write_statfs(p, a.buf(), host, path);
}

int64_t sys_fstatfs(Process& p, IoArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    return write_statfs(p, a.buf(), f->host.get(), f->guest_path);
}

// posix_fadvise: a hint about the page cache, which the guest's files share
// with the host's; checked as Linux checks it, then left to the host.
int64_t sys_fadvise64(Process& p, FadviseArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    struct stat st;
    if (::fstat(f->host.get(), &st) < 0) return -errno;
    if (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) return -ESPIPE;
    if (a.advice() > POSIX_FADV_NOREUSE || a.length() < 0) return -EINVAL;
    return 0;
}

int64_t sys_statx(Process& p, StatxArgs a) {
    int flags = static_cast<int>(a.flags());
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)) return -EINVAL;
    Fd holder;
    int host;
    if (int64_t r = resolve(p, a.dirfd(), a.path(), flags, holder, host); r < 0) return r;
    struct statx sx;
    if (::statx(host, "", AT_EMPTY_PATH | (flags & AT_STATX_SYNC_TYPE), static_cast<unsigned>(a.mask()), &sx) < 0)
        return -errno;
    return p.mem().write_obj(a.buf(), sx) ? 0 : -EFAULT;
}

namespace {

// getdents64 of a synthetic directory: linux_dirent64 records, 8-aligned,
// as many as fit; EINVAL when not even the next one does.
int64_t synthetic_dents(Process& p, OpenFile& f, uint64_t buf, uint64_t count) {
    std::vector<uint8_t> out;
    while (f.next < f.entries->size()) {
        const OpenFile::Entry& e = (*f.entries)[f.next];
        size_t len = (19 + e.name.size() + 1 + 7) & ~size_t{7};  // ino, off, reclen, type, name, NUL
        if (out.size() + len > count) break;
        size_t at = out.size();
        out.resize(at + len, 0);
        uint64_t ino = 0x10000 + f.next, off = f.next + 1;
        uint16_t reclen = static_cast<uint16_t>(len);
        std::memcpy(&out[at], &ino, 8);
        std::memcpy(&out[at + 8], &off, 8);
        std::memcpy(&out[at + 16], &reclen, 2);
        out[at + 18] = e.type;
        std::memcpy(&out[at + 19], e.name.data(), e.name.size());
        ++f.next;
    }
    if (out.empty() && f.next < f.entries->size()) return -EINVAL;
    if (!out.empty() && !p.mem().write(buf, out.data(), out.size())) return -EFAULT;
    return static_cast<int64_t>(out.size());
}

}  // namespace

int64_t sys_getdents64(Process& p, IoArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (!f->directory) return -ENOTDIR;
    if (f->entries) return synthetic_dents(p, *f, a.buf(), a.count());
    std::vector<uint8_t> buf(std::min<uint64_t>(a.count(), 1 << 20));
    long n = ::syscall(SYS_getdents64, f->host.get(), buf.data(), buf.size());
    if (n < 0) return -errno;
    return p.mem().write(a.buf(), buf.data(), static_cast<uint64_t>(n)) ? n : -EFAULT;
}

namespace {

int64_t readlink_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t buf, uint64_t size) {
    if (static_cast<int64_t>(size) <= 0) return -EINVAL;
    Fd holder;
    int host;
    // An empty path names `dirfd` itself (never the cwd: -ENOENT), as in Linux.
    std::string path;
    if (int64_t r = p.read_path(dirfd, path_ptr, path, dirfd != AT_FDCWD); r < 0) return r;
    bool empty_path = path.empty();
    if (procfs::covers(path) && path != "/proc") {  // /proc's links are the VM's own
        auto target = procfs::readlink(p, path);
        if (!target) return -target.error().sys_errno;
        uint64_t n = std::min<uint64_t>(target->size(), size);
        return p.mem().write(buf, target->data(), n) ? static_cast<int64_t>(n) : -EFAULT;
    }
    if (int64_t r = resolve_path(p, dirfd, std::move(path), AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH, holder, host); r < 0)
        return r;
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

}  // namespace

int64_t sys_readlink(Process& p, ReadlinkArgs a) { return readlink_common(p, AT_FDCWD, a.path(), a.buf(), a.size()); }

int64_t sys_readlinkat(Process& p, ReadlinkatArgs a) {
    return readlink_common(p, a.dirfd(), a.path(), a.buf(), a.size());
}

namespace {

int64_t access_common(Process& p, int dirfd, uint64_t path_ptr, uint64_t mode, int flags) {
    if (mode & ~uint64_t(R_OK | W_OK | X_OK)) return -EINVAL;
    if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EACCESS | AT_EMPTY_PATH)) return -EINVAL;
    std::string path;
    if (int64_t r = p.read_path(dirfd, path_ptr, path, flags & AT_EMPTY_PATH); r < 0) return r;
    Fd holder;
    int host;
    if (int64_t r = resolve(p, dirfd, path_ptr, flags, holder, host); r < 0) return r;
    // X_OK from the mode bits, as the guest's credentials see them: the
    // host's answer would be the VMM's, and its jail mounts the guest's
    // files noexec (EACCES for every file).
    const int host_mode = static_cast<int>(mode & (R_OK | W_OK));
    if (::syscall(SYS_faccessat2, host, "", host_mode ? host_mode : F_OK, AT_EMPTY_PATH | (flags & AT_EACCESS)) < 0)
        return -errno;
    if (mode & X_OK) {
        struct stat st;
        if (::fstat(host, &st) < 0) return -errno;
        const uint32_t uid = p.options().uid, gid = p.options().gid;
        const mode_t bits = uid == 0           ? (S_ISDIR(st.st_mode) ? 0111 : st.st_mode & 0111)
                            : uid == st.st_uid ? st.st_mode & S_IXUSR
                            : gid == st.st_gid ? st.st_mode & S_IXGRP
                                               : st.st_mode & S_IXOTH;
        if (!bits) return -EACCES;
    }
    if ((mode & W_OK) && !path.empty() && p.sandbox().read_only(path)) return -EROFS;
    return 0;
}

}  // namespace

// Extended attributes: the guest's file system shows none, as a file system
// without them (the host's labels and ACLs are not the guest's business).
// The file must exist; a get finds no attribute, a list is empty, a set or
// remove is not supported.
namespace {

int64_t xattr_file(Process& p, uint64_t path_ptr, bool follow) {
    Fd holder;
    int host_fd = -1;
    return resolve(p, AT_FDCWD, path_ptr, follow ? 0 : AT_SYMLINK_NOFOLLOW, holder, host_fd);
}

// Linux's name check: 1..255 bytes (XATTR_NAME_MAX), else ERANGE.
int64_t xattr_name(Process& p, uint64_t name_ptr) {
    auto name = p.mem().read_cstring(name_ptr, 256);
    if (!name) return name.error().sys_errno == EFAULT ? -EFAULT : -ERANGE;
    return name->empty() || name->size() > 255 ? -ERANGE : 0;
}

int64_t xattr_get(Process& p, int64_t file, uint64_t name_ptr) {
    if (file < 0) return file;
    if (int64_t r = xattr_name(p, name_ptr); r < 0) return r;
    return -ENODATA;
}

int64_t xattr_change(Process& p, int64_t file, uint64_t name_ptr) {
    if (file < 0) return file;
    if (int64_t r = xattr_name(p, name_ptr); r < 0) return r;
    return -EOPNOTSUPP;
}

int64_t fd_file(Process& p, uint64_t fd) { return file_of(p, fd) ? 0 : -EBADF; }

}  // namespace

int64_t sys_getxattr(Process& p, XattrPathArgs a) { return xattr_get(p, xattr_file(p, a.path(), true), a.name()); }
int64_t sys_lgetxattr(Process& p, XattrPathArgs a) { return xattr_get(p, xattr_file(p, a.path(), false), a.name()); }
int64_t sys_fgetxattr(Process& p, XattrFdArgs a) { return xattr_get(p, fd_file(p, a.fd()), a.name()); }
int64_t sys_listxattr(Process& p, XattrPathArgs a) { return xattr_file(p, a.path(), true); }
int64_t sys_llistxattr(Process& p, XattrPathArgs a) { return xattr_file(p, a.path(), false); }
int64_t sys_flistxattr(Process& p, XattrFdArgs a) { return fd_file(p, a.fd()); }
int64_t sys_setxattr(Process& p, XattrPathArgs a) { return xattr_change(p, xattr_file(p, a.path(), true), a.name()); }
int64_t sys_lsetxattr(Process& p, XattrPathArgs a) { return xattr_change(p, xattr_file(p, a.path(), false), a.name()); }
int64_t sys_fsetxattr(Process& p, XattrFdArgs a) { return xattr_change(p, fd_file(p, a.fd()), a.name()); }
int64_t sys_removexattr(Process& p, XattrPathArgs a) {
    return xattr_change(p, xattr_file(p, a.path(), true), a.name());
}
int64_t sys_lremovexattr(Process& p, XattrPathArgs a) {
    return xattr_change(p, xattr_file(p, a.path(), false), a.name());
}
int64_t sys_fremovexattr(Process& p, XattrFdArgs a) { return xattr_change(p, fd_file(p, a.fd()), a.name()); }

int64_t sys_access(Process& p, PathModeArgs a) { return access_common(p, AT_FDCWD, a.path(), a.mode(), 0); }

int64_t sys_faccessat(Process& p, AtPathModeArgs a) { return access_common(p, a.dirfd(), a.path(), a.mode(), 0); }

int64_t sys_faccessat2(Process& p, AtPathModeArgs a) {
    return access_common(p, a.dirfd(), a.path(), a.mode(), static_cast<int>(a.flags()));
}

}  // namespace vessel::thin
