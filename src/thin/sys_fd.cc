// Calls on descriptors themselves: close, seek, truncate and sync,
// duplication, fcntl, pipes and ioctl.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <memory>

#include "thin/process.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
int64_t sys_close(Process& p, FdArgs a) {
    return a.fd() > INT32_MAX ? -EBADF : p.fds().close(static_cast<int>(a.fd()));
}

int64_t sys_lseek(Process& p, SeekArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (f->entries) {  // a synthetic directory: rewinddir and seekdir to a d_off it gave
        if (a.whence() != SEEK_SET || a.offset() > f->entries->size()) return -EINVAL;
        f->next = a.offset();
        return static_cast<int64_t>(f->next);
    }
    off_t r = ::lseek(f->host.get(), static_cast<off_t>(a.offset()), static_cast<int>(a.whence()));
    return r < 0 ? -errno : r;
}

int64_t sys_ftruncate(Process& p, TruncateArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    return ::ftruncate(f->host.get(), static_cast<off_t>(a.length())) < 0 ? -errno : 0;
}

int64_t sys_fsync(Process& p, FdArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    return ::fsync(f->host.get()) < 0 ? -errno : 0;
}

int64_t sys_fdatasync(Process& p, FdArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    return ::fdatasync(f->host.get()) < 0 ? -errno : 0;
}

int64_t sys_dup(Process& p, FdArgs a) {
    auto* e = a.fd() > INT32_MAX ? nullptr : p.fds().get(static_cast<int>(a.fd()));
    if (!e) return -EBADF;
    return p.fds().install(e->file, false);
}

namespace {

int64_t dup3_common(Process& p, uint64_t oldfd, uint64_t newfd, uint64_t flags, bool is_dup2) {
    if (flags & ~uint64_t(O_CLOEXEC)) return -EINVAL;
    auto* e = oldfd > INT32_MAX ? nullptr : p.fds().get(static_cast<int>(oldfd));
    if (!e) return -EBADF;
    if (newfd >= static_cast<uint64_t>(FdTable::kMaxFds)) return -EBADF;
    if (oldfd == newfd) return is_dup2 ? static_cast<int64_t>(newfd) : -EINVAL;
    auto file = e->file;
    return p.fds().install_at(static_cast<int>(newfd), std::move(file), flags & O_CLOEXEC);
}
}  // namespace

int64_t sys_dup2(Process& p, DupArgs a) { return dup3_common(p, a.oldfd(), a.newfd(), 0, true); }
int64_t sys_dup3(Process& p, DupArgs a) { return dup3_common(p, a.oldfd(), a.newfd(), a.flags(), false); }

int64_t sys_fcntl(Process& p, FcntlArgs a) {
    auto* e = a.fd() > INT32_MAX ? nullptr : p.fds().get(static_cast<int>(a.fd()));
    if (!e) return -EBADF;
    int host = e->file->host.get();
    switch (a.cmd()) {
        case F_DUPFD:
        case F_DUPFD_CLOEXEC:
            if (a.arg() >= static_cast<uint64_t>(FdTable::kMaxFds)) return -EINVAL;
            return p.fds().install(e->file, a.cmd() == F_DUPFD_CLOEXEC, static_cast<int>(a.arg()));
        case F_GETFD: return e->cloexec ? FD_CLOEXEC : 0;
        case F_SETFD: e->cloexec = a.arg() & FD_CLOEXEC; return 0;
        case F_GETFL: {
            int r = ::fcntl(host, F_GETFL);
            return r < 0 ? -errno : (r & ~O_CLOEXEC);
        }
        case F_SETFL: {
            int keep = O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME;
            return ::fcntl(host, F_SETFL, static_cast<int>(a.arg()) & keep) < 0 ? -errno : 0;
        }
        case F_GETLK:
        case F_SETLK:
        case F_SETLKW: {
            struct flock fl;
            if (!p.mem().read_obj(a.arg(), fl)) return -EFAULT;
            if (::fcntl(host, static_cast<int>(a.cmd()), &fl) < 0) return -errno;
            if (a.cmd() == F_GETLK && !p.mem().write_obj(a.arg(), fl)) return -EFAULT;
            return 0;
        }
        default: return -EINVAL;
    }
}

namespace {

int64_t pipe_common(Process& p, uint64_t fds_ptr, uint64_t flags) {
    if (flags & ~uint64_t(O_CLOEXEC | O_NONBLOCK | O_DIRECT)) return -EINVAL;
    int host[2];
    if (::pipe2(host, O_CLOEXEC | (static_cast<int>(flags) & (O_NONBLOCK | O_DIRECT))) < 0) return -errno;
    return install_pair(p, Fd(host[0]), Fd(host[1]), flags & O_CLOEXEC, fds_ptr);
}

}  // namespace

int64_t install_pair(Process& p, Fd one, Fd two, bool cloexec, uint64_t out_ptr) {
    auto f1 = std::make_shared<OpenFile>(), f2 = std::make_shared<OpenFile>();
    f1->host = std::move(one);
    f2->host = std::move(two);
    int g1 = p.fds().install(std::move(f1), cloexec);
    if (g1 < 0) return g1;
    int g2 = p.fds().install(std::move(f2), cloexec);
    if (g2 < 0) {
        p.fds().close(g1);
        return g2;
    }
    int32_t out[2] = {g1, g2};
    if (!p.mem().write(out_ptr, out, sizeof out)) {
        p.fds().close(g1);
        p.fds().close(g2);
        return -EFAULT;
    }
    return 0;
}

int64_t sys_pipe2(Process& p, PipeArgs a) { return pipe_common(p, a.fds(), a.flags()); }
int64_t sys_pipe(Process& p, PipeArgs a) { return pipe_common(p, a.fds(), 0); }

// The host's advisory lock on the host file: host processes see it (a
// shared --rw directory), as they would a container's.
int64_t sys_flock(Process& p, FlockArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    const uint64_t op = a.operation() & 0xffffffff;  // an unsigned int, as Linux reads it
    if (op & 32) return 0;                           // LOCK_MAND: ignored since Linux 5.15, a success
    const uint64_t kind = op & ~uint64_t(LOCK_NB);
    if (kind != LOCK_SH && kind != LOCK_EX && kind != LOCK_UN) return -EINVAL;
    return ::flock(f->host.get(), static_cast<int>(op)) < 0 ? -errno : 0;
}

int64_t sys_ioctl(Process& p, IoctlArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    int host = f->host.get();
    auto* e = p.fds().get(static_cast<int>(a.fd()));
    switch (a.request()) {
        case FIOCLEX: e->cloexec = true; return 0;
        case FIONCLEX: e->cloexec = false; return 0;
        case FIONBIO: {  // Python's socket.setblocking, asyncio's self-pipe: fcntl's O_NONBLOCK
            int on;
            if (!p.mem().read_obj(a.arg(), on)) return -EFAULT;
            const int flags = ::fcntl(host, F_GETFL);
            if (flags < 0) return -errno;
            const int want = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
            return want == flags || ::fcntl(host, F_SETFL, want) == 0 ? 0 : -errno;
        }
        case FIONREAD: {
            int n;
            if (::ioctl(host, FIONREAD, &n) < 0) return -errno;
            return p.mem().write_obj(a.arg(), n) ? 0 : -EFAULT;
        }
        default: break;
    }
    if (!::isatty(host)) return -ENOTTY;
    // Terminal requests carry the kernel's 36-byte termios, or a winsize.
    uint8_t buf[64] = {};
    switch (a.request()) {
        case TCGETS:
        case TIOCGWINSZ: {
            if (::ioctl(host, a.request(), buf) < 0) return -errno;
            uint64_t n = a.request() == TCGETS ? 36 : sizeof(winsize);
            return p.mem().write(a.arg(), buf, n) ? 0 : -EFAULT;
        }
        case TCSETS:
        case TCSETSW:
        case TCSETSF:
            if (!p.mem().read(a.arg(), buf, 36)) return -EFAULT;
            return ::ioctl(host, a.request(), buf) < 0 ? -errno : 0;
        case TIOCGPGRP: {  // the VM's own groups (the tree's), not the host's
            const int32_t pgrp = static_cast<int32_t>(p.tree() ? p.tree()->foreground(p, std::nullopt) : kGuestPid);
            return p.mem().write_obj(a.arg(), pgrp) ? 0 : -EFAULT;
        }
        case TIOCSPGRP: {
            int32_t pgrp;
            if (!p.mem().read_obj(a.arg(), pgrp)) return -EFAULT;
            if (pgrp < 0) return -EINVAL;
            if (!p.tree()) return pgrp == kGuestPid ? 0 : -EPERM;
            const int64_t r = p.tree()->foreground(p, pgrp);
            return r < 0 ? r : 0;
        }
        case TIOCGSID: {  // the terminal is pid 1's session's
            const int32_t sid = kGuestPid;
            return p.mem().write_obj(a.arg(), sid) ? 0 : -EFAULT;
        }
        default: return -ENOTTY;
    }
}

}  // namespace vessel::thin
