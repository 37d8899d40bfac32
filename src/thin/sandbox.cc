#include "thin/sandbox.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace vessel::thin {
namespace {

int openat2_in_root(int dirfd, const std::string& rel, uint64_t flags, uint64_t mode) {
    open_how how{};
    how.flags = flags | O_CLOEXEC;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    int fd;
    do fd = static_cast<int>(::syscall(SYS_openat2, dirfd, rel.c_str(), &how, sizeof how));
    while (fd < 0 && errno == EAGAIN);  // RESOLVE_IN_ROOT retries on concurrent renames
    return fd;
}

Result<Fd> open_dir(const std::string& host, const char* flag) {
    int fd = ::open(host.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return fail_errno(std::string(flag) + " " + host);
    return Fd(fd);
}

Result<Fd> errno_result() { return fail("", errno); }

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
    Sandbox sb;
    Mount rootm{"/", {}, false, root};
    if (root.empty()) {
        // An empty root: a fresh directory, removed at once, so nothing can
        // ever appear in it and nothing is left behind.
        char tmpl[] = "/tmp/vessel-empty-XXXXXX";
        if (!::mkdtemp(tmpl)) return fail_errno("creating the empty root directory");
        auto fd = open_dir(tmpl, "--root");
        ::rmdir(tmpl);
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
            if (e.guest_path == g && g != "/")
                return fail("--rw: " + g + " is given twice", EINVAL);
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

Result<Fd> Sandbox::open_parent(const std::string& abs, std::string& name, bool need_write,
                                const Mount** mount) const {
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
