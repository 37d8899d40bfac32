#include "thin/sandbox.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>

namespace vessel::thin {
namespace {

// The device of the host's /dev. Read once, when the first sandbox is made:
// that is before the VMM's jail (jail/), whose own /dev holds five nodes on
// its tmpfs root, and through which a `--root /` still reaches the host's.
dev_t host_dev_id() {
    static const dev_t id = [] {
        struct stat st;
        return ::stat("/dev", &st) == 0 ? st.st_dev : dev_t(-1);
    }();
    return id;
}

// True when `fd` lies on one of the host's kernel file systems (procfs,
// sysfs, the host's /dev, ...). RESOLVE_IN_ROOT keeps a path inside the mount
// directory, but that directory may itself contain such mounts: `--root /`
// and a symlink like /etc/mtab -> /proc/mounts would otherwise show the guest
// the VMM's own /proc. The guest's /dev, /proc and /sys are never the host's.
// `parent`: how to open the directory `fd` was found in, for a symbolic link
// whose own fstatfs fails (9p, for one, answers ELOOP for an O_PATH link).
bool on_host_kernel_fs(int fd, const std::function<int()>& parent) {
    struct statfs fs;
    if (::fstatfs(fd, &fs) < 0) {
        // A link lies on its directory's file system: that one's type,
        // when the two are the same file system (same device) still.
        struct stat link, dir;
        if (errno != ELOOP || ::fstat(fd, &link) != 0 || !S_ISLNK(link.st_mode)) return true;  // cannot tell: refuse
        Fd d(parent());
        if (!d || ::fstat(d.get(), &dir) != 0 || dir.st_dev != link.st_dev) return true;
        return on_host_kernel_fs(d.get(), [] { return -1; });
    }
    switch (static_cast<unsigned long>(fs.f_type)) {
        case PROC_SUPER_MAGIC:
        case SYSFS_MAGIC:
        case DEVPTS_SUPER_MAGIC:
        case CGROUP_SUPER_MAGIC:
        case CGROUP2_SUPER_MAGIC:
        case DEBUGFS_MAGIC:
        case TRACEFS_MAGIC:
        case SECURITYFS_MAGIC:
        case BPF_FS_MAGIC:
        case PSTOREFS_MAGIC:
        case EFIVARFS_MAGIC:
        case NSFS_MAGIC:
        case BINFMTFS_MAGIC:
        case 0x62656570:  // configfs
        case 0x65735543:  // fusectl
        case 0x19800202:  // mqueue
            return true;
        default: break;
    }
    // The host's /dev is a devtmpfs, whose magic is tmpfs's: compare devices.
    struct stat st;
    if (::fstat(fd, &st) < 0) return true;
    return st.st_dev == host_dev_id();
}

int openat2_in_root(int dirfd, const std::string& rel, uint64_t flags, uint64_t mode) {
    open_how how{};
    how.flags = flags | O_CLOEXEC;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int fd;
    do fd = static_cast<int>(::syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof how));
    while (fd < 0 && errno == EAGAIN);  // RESOLVE_IN_ROOT retries on concurrent renames
    auto parent = [&] {
        const size_t slash = rel.rfind('/');
        const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : rel.substr(0, slash);
        open_how up{};
        up.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
        up.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
        return static_cast<int>(::syscall(SYS_openat2, dirfd, dir.c_str(), &up, sizeof up));
    };
    if (fd >= 0 && on_host_kernel_fs(fd, parent)) {
        ::close(fd);
        errno = ENOENT;
        return -1;
    }
    return fd;
}

Result<Fd> open_dir(const std::string& host, const char* flag) {
    int fd = ::open(host.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    // EINVAL, not the errno: callers map ENOENT to "program not found" (127),
    // and a missing --root or --rw directory is a usage error.
    if (fd < 0) return fail(std::string(flag) + " " + host + ": " + std::strerror(errno), EINVAL);
    return Fd(fd);
}

Result<Fd> errno_result() { return fail("", errno); }

struct LinuxDirent64 {
    uint64_t ino;
    int64_t off;
    uint16_t reclen;
    uint8_t type;
    char name[1];
};

bool is_empty_dir(int fd) {
    alignas(8) char buf[256];
    long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n < 0) return false;
    for (long off = 0; off < n;) {
        auto* d = reinterpret_cast<const LinuxDirent64*>(buf + off);
        std::string_view name(d->name);
        if (name != "." && name != "..") return false;
        off += d->reclen;
    }
    return n > 0;
}

// The default root: an empty directory. A persistent one (created once,
// mode 0555, owned by us, checked empty on every use) costs a few system
// calls; if it cannot be trusted, a fresh directory is made and removed at
// once, which nothing can ever add entries to.
Result<Fd> open_empty_root() {
    std::string dir = "/run/vessel";
    if (::geteuid() != 0) {
        const char* runtime = std::getenv("XDG_RUNTIME_DIR");
        dir = runtime && *runtime ? std::string(runtime) + "/vessel" : std::string();
    }
    if (!dir.empty()) {
        std::string path = dir + "/empty-root";
        int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT) {
            ::mkdir(dir.c_str(), 0755);
            ::mkdir(path.c_str(), 0555);
            fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        }
        if (fd >= 0) {
            Fd owned(fd);
            struct stat st;
            if (::fstat(fd, &st) == 0 && st.st_uid == ::geteuid() && (st.st_mode & 07777) == 0555 && is_empty_dir(fd)) {
                int path_fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (path_fd >= 0) return Fd(path_fd);
            }
        }
    }
    char tmpl[] = "/tmp/vessel-empty-XXXXXX";
    if (!::mkdtemp(tmpl)) return fail_errno("creating the empty root directory");
    auto fd = open_dir(tmpl, "--root");
    ::rmdir(tmpl);
    return fd;
}

}  // namespace

std::string Sandbox::normalize(const std::string& base, const std::string& path) {
    std::vector<std::string_view> parts;
    auto push = [&](std::string_view p) {
        size_t i = 0;
        while (i < p.size()) {
            size_t j = p.find('/', i);
            if (j == std::string_view::npos) j = p.size();
            std::string_view c = p.substr(i, j - i);
            if (c == "..") {
                if (!parts.empty()) parts.pop_back();
            } else if (!c.empty() && c != ".") {
                parts.push_back(c);
            }
            i = j + 1;
        }
    };
    if (path.empty() || path[0] != '/') push(base);
    push(path);
    std::string out;
    for (auto c : parts) {
        out += '/';
        out += c;
    }
    return out.empty() ? "/" : out;
}

Result<Sandbox> Sandbox::create(const std::string& root, const std::vector<MountSpec>& rw) {
    (void)host_dev_id();  // now, while "/dev" is still the host's
    Sandbox sb;
    Mount rootm{"/", {}, false, root};
    if (root.empty()) {
        auto fd = open_empty_root();
        if (!fd) return std::unexpected(fd.error());
        rootm.dir = std::move(*fd);
        rootm.host_dir = "(empty)";
    } else {
        auto fd = open_dir(root, "--root");
        if (!fd) return std::unexpected(fd.error());
        rootm.dir = std::move(*fd);
    }
    sb.mounts_.push_back(std::move(rootm));
    for (const auto& m : rw) {
        if (m.guest_path.empty() || m.guest_path[0] != '/')
            return fail("--rw " + m.host_dir + ":" + m.guest_path + ": guest path must be absolute", EINVAL);
        std::string g = normalize("/", m.guest_path);
        if (classify(g) != Special::kNone || g == "/dev" || g == "/proc" || g == "/sys")
            return fail("--rw " + m.host_dir + ":" + m.guest_path + ": cannot mount over " + g, EINVAL);
        for (const auto& e : sb.mounts_)
            if (e.guest_path == g && g != "/") return fail("--rw: " + g + " is given twice", EINVAL);
        auto fd = open_dir(m.host_dir, "--rw");
        if (!fd) return std::unexpected(fd.error());
        if (g == "/") {
            sb.mounts_[0] = Mount{"/", std::move(*fd), true, m.host_dir};
            continue;
        }
        sb.mounts_.push_back(Mount{g, std::move(*fd), true, m.host_dir});
    }
    std::stable_sort(sb.mounts_.begin(), sb.mounts_.end(),
                     [](const Mount& a, const Mount& b) { return a.guest_path.size() > b.guest_path.size(); });
    return sb;
}

Result<> Sandbox::reopen_at(size_t index, const std::string& path) {
    if (index >= mounts_.size()) return fail("sandbox: no mount " + std::to_string(index), EINVAL);
    Mount& m = mounts_[index];
    Fd fd(::open(path.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd) return fail_errno("sandbox: " + m.host_dir + " as " + path);
    struct stat was, now;
    if (::fstat(m.dir.get(), &was) != 0 || ::fstat(fd.get(), &now) != 0) return fail_errno("sandbox: fstat");
    if (was.st_dev != now.st_dev || was.st_ino != now.st_ino)
        return fail("sandbox: " + path + " is not " + m.host_dir, EINVAL);
    m.dir = std::move(fd);
    return {};
}

Sandbox::Location Sandbox::locate(const std::string& abs) const {
    for (const auto& m : mounts_) {
        if (m.guest_path == "/") return {&m, abs == "/" ? "." : abs.substr(1)};
        if (abs == m.guest_path) return {&m, "."};
        if (abs.size() > m.guest_path.size() && abs.compare(0, m.guest_path.size(), m.guest_path) == 0 &&
            abs[m.guest_path.size()] == '/')
            return {&m, abs.size() == m.guest_path.size() + 1 ? "." : abs.substr(m.guest_path.size() + 1)};
    }
    return {&mounts_.back(), abs.substr(1)};  // unreachable: "/" always matches
}

Sandbox::Special Sandbox::classify(const std::string& abs) {
    static constexpr std::string_view kDevices[] = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                                    "/dev/urandom"};
    for (auto d : kDevices)
        if (abs == d) return Special::kDevice;
    for (std::string_view p : {"/dev", "/proc", "/sys"})
        if (abs.compare(0, p.size(), p) == 0 && (abs.size() == p.size() || abs[p.size()] == '/'))
            return abs.size() == p.size() ? Special::kNone : Special::kHidden;
    return Special::kNone;
}

Result<Fd> Sandbox::open(const std::string& abs, int flags, unsigned mode) const {
    switch (classify(abs)) {
        case Special::kDevice: {
            int fd = ::open(abs.c_str(), (flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_DIRECTORY)) | O_CLOEXEC);
            if (fd < 0) return errno_result();
            return Fd(fd);
        }
        case Special::kHidden: return fail("", (flags & O_CREAT) ? EACCES : ENOENT);
        case Special::kNone: break;
    }
    Location loc = locate(abs);
    bool wants_write = (flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC) || (flags & O_TMPFILE) == O_TMPFILE;
    if (!loc.mount->writable) {
        if (wants_write) return fail("", EROFS);
        flags &= ~O_EXCL;
        if (flags & O_CREAT) {
            flags &= ~O_CREAT;
            int fd = openat2_in_root(loc.mount->dir.get(), loc.rel, flags, 0);
            if (fd < 0) return fail("", errno == ENOENT ? EROFS : errno);
            Fd f(fd);
            struct stat st;
            if (::fstat(fd, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) return fail("", EACCES);
            return f;
        }
    }
    int fd = openat2_in_root(loc.mount->dir.get(), loc.rel, flags, mode);
    if (fd < 0) return errno_result();
    Fd f(fd);
    if (!(flags & O_PATH)) {
        struct stat st;
        if (::fstat(fd, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))) return fail("", EACCES);
    }
    return f;
}

Result<Fd> Sandbox::open_path(const std::string& abs, bool nofollow) const {
    if (classify(abs) == Special::kDevice) {
        int fd = ::open(abs.c_str(), O_PATH | O_CLOEXEC);
        if (fd < 0) return errno_result();
        return Fd(fd);
    }
    if (classify(abs) == Special::kHidden) return fail("", ENOENT);
    Location loc = locate(abs);
    int fd = openat2_in_root(loc.mount->dir.get(), loc.rel, O_PATH | (nofollow ? O_NOFOLLOW : 0), 0);
    if (fd < 0) return errno_result();
    return Fd(fd);
}

Result<Fd> Sandbox::open_parent(const std::string& abs, std::string& name, bool need_write, const Mount** mount) const {
    if (abs == "/") return fail("", need_write ? EBUSY : EINVAL);
    if (classify(abs) != Special::kNone) return fail("", need_write ? EACCES : ENOENT);
    Location loc = locate(abs);
    if (loc.rel == ".") return fail("", EBUSY);  // a mount point itself
    if (need_write && !loc.mount->writable) return fail("", EROFS);
    size_t slash = loc.rel.rfind('/');
    std::string parent = slash == std::string::npos ? "." : loc.rel.substr(0, slash);
    name = slash == std::string::npos ? loc.rel : loc.rel.substr(slash + 1);
    int fd = openat2_in_root(loc.mount->dir.get(), parent, O_PATH | O_DIRECTORY, 0);
    if (fd < 0) return errno_result();
    if (mount) *mount = loc.mount;
    return Fd(fd);
}

}  // namespace vessel::thin
