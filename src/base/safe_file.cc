#include "base/safe_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <ctime>

namespace vessel {
namespace {

// Why `name` in `dir_fd` could not be opened, saying so plainly when the
// cause is a symbolic link or the kind of file rather than the errno.
std::unexpected<Error> refuse(int dir_fd, const std::string& name, const std::string& shown, bool want_dir = false) {
    const int e = errno;
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode))
            return fail(shown + ": is a symbolic link, which Vessel does not follow here; name what it points to",
                        ELOOP);
        if (!want_dir && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
            return fail(shown + ": not a regular file", EINVAL);
    }
    errno = e;
    return fail_errno(shown);
}

// Checks an opened descriptor's kind. It was opened non-blocking only so
// that a FIFO could not stall the open; that flag means nothing to a regular
// file, but a device gets its blocking writes back.
Result<Fd> checked(Fd fd, const std::string& shown, bool devices_too) {
    struct stat st;
    if (::fstat(fd.get(), &st) < 0) return fail_errno(shown);
    if (S_ISREG(st.st_mode)) return fd;
    if (!(devices_too && S_ISCHR(st.st_mode))) return fail(shown + ": not a regular file", EINVAL);
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) < 0) return fail_errno(shown);
    return fd;
}

// A suffix no one can guess, so that nobody can plant the temporary name
// ahead of us (O_EXCL would make us retry, not follow it, but still).
std::string random_suffix() {
    uint64_t r = 0;
    if (::getrandom(&r, sizeof r, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof r)) {
        static std::atomic<uint64_t> counter{0};
        timespec ts{};
        ::clock_gettime(CLOCK_MONOTONIC, &ts);
        r = static_cast<uint64_t>(ts.tv_nsec) * 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(::getpid()) << 32 ^
            counter.fetch_add(1);
    }
    char buf[17];
    std::snprintf(buf, sizeof buf, "%012llx", static_cast<unsigned long long>(r & 0xffffffffffffull));
    return buf;
}

}  // namespace

Result<DirFd> DirFd::open(const std::string& path) {
    DirFd d;
    d.path_ = path;
    d.fd_.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!d.fd_) return refuse(AT_FDCWD, path, path, true);
    return d;
}

Result<DirFd> DirFd::adopt(Fd fd, const std::string& path) {
    struct stat st;
    if (!fd || ::fstat(fd.get(), &st) != 0) return fail_errno(path);
    if (!S_ISDIR(st.st_mode)) return fail(path + ": the descriptor passed is not a directory", ENOTDIR);
    int flags = ::fcntl(fd.get(), F_GETFL);
    if (flags < 0 || (flags & O_PATH))
        return fail(path + ": the descriptor passed is O_PATH; open the directory", EBADF);
    DirFd d;
    d.path_ = path;
    d.fd_ = std::move(fd);
    return d;
}

Result<DirFd> DirFd::create(const std::string& path, bool* created) {
    bool made = ::mkdir(path.c_str(), 0700) == 0;
    if (!made && errno != EEXIST) return fail_errno("create directory " + path);
    if (created) *created = made;
    auto d = open(path);
    if (!d && made) ::rmdir(path.c_str());
    return d;
}

std::string DirFd::shown(const std::string& name) const {
    return path_.empty() || path_.back() == '/' ? path_ + name : path_ + "/" + name;
}

bool DirFd::contains(const std::string& name) const {
    struct stat st;
    return ::fstatat(fd_.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

Result<Fd> DirFd::open_regular(const std::string& name) const {
    return vessel::open_regular(fd_.get(), name, shown(name));
}

Result<Fd> DirFd::open_append(const std::string& name, bool devices_too) const {
    Fd fd(::openat(fd_.get(), name.c_str(),
                   O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600));
    if (!fd) return refuse(fd_.get(), name, shown(name));
    return checked(std::move(fd), shown(name), devices_too);
}

Result<> DirFd::remove(const std::string& name) const {
    if (::unlinkat(fd_.get(), name.c_str(), 0) < 0) return fail_errno("remove " + shown(name));
    return {};
}

std::pair<std::string, std::string> split_path(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    size_t slash = p.rfind('/');
    if (slash == std::string::npos) return {".", p};
    if (p == "/") return {"/", ""};
    return {slash == 0 ? "/" : p.substr(0, slash), p.substr(slash + 1)};
}

Result<Fd> open_append_path(const std::string& path, bool devices_too) {
    auto [dir_path, name] = split_path(path);
    auto dir = DirFd::open(dir_path);
    if (!dir) return std::unexpected(dir.error());
    return dir->open_append(name, devices_too);
}

Result<Fd> open_regular(const std::string& path) { return open_regular(AT_FDCWD, path, path); }

Result<Fd> open_regular(int dir_fd, const std::string& name, const std::string& shown) {
    Fd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!fd) return refuse(dir_fd, name, shown);
    return checked(std::move(fd), shown, false);
}

Result<std::string> read_regular_file(const std::string& path, size_t max) {
    auto fd = open_regular(path);
    if (!fd) return std::unexpected(fd.error());
    std::string out;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd->get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return fail_errno(path);
        if (n == 0) return out;
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > max) return fail(path + ": larger than " + std::to_string(max) + " bytes", EFBIG);
    }
}

Result<AtomicFile> AtomicFile::create(const DirFd& dir, const std::string& name) {
    AtomicFile f;
    f.dir_.reset(::fcntl(dir.get(), F_DUPFD_CLOEXEC, 0));
    if (!f.dir_) return fail_errno(dir.path());
    f.name_ = name;
    f.shown_ = dir.shown(name);
    for (int attempt = 0; attempt < 8; ++attempt) {
        std::string tmp = "." + name + ".tmp-" + random_suffix();
        f.fd_.reset(::openat(dir.get(), tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (f.fd_) {
            f.tmp_ = std::move(tmp);
            return f;
        }
        if (errno != EEXIST) return fail_errno("create " + dir.shown(tmp));
    }
    return fail("create a temporary file for " + f.shown_ + ": every name tried exists", EEXIST);
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : dir_(std::move(other.dir_)),
      fd_(std::move(other.fd_)),
      name_(std::move(other.name_)),
      tmp_(std::exchange(other.tmp_, {})),
      shown_(std::move(other.shown_)),
      synced_(other.synced_) {}

AtomicFile& AtomicFile::operator=(AtomicFile&& other) noexcept {
    if (this != &other) {
        discard();
        dir_ = std::move(other.dir_);
        fd_ = std::move(other.fd_);
        name_ = std::move(other.name_);
        tmp_ = std::exchange(other.tmp_, {});
        shown_ = std::move(other.shown_);
        synced_ = other.synced_;
    }
    return *this;
}

Result<> AtomicFile::write(const void* data, size_t size) {
    if (!write_full(fd_.get(), data, size)) return fail_errno("write " + shown_);
    return {};
}

Result<> AtomicFile::sync() {
    if (::fsync(fd_.get()) < 0) return fail_errno("fsync " + shown_);
    synced_ = true;
    return {};
}

Result<> AtomicFile::commit(Replace replace) {
    if (tmp_.empty()) return fail(shown_ + ": nothing to commit", EINVAL);
    int r = replace == Replace::kYes
                ? ::renameat(dir_.get(), tmp_.c_str(), dir_.get(), name_.c_str())
                : ::renameat2(dir_.get(), tmp_.c_str(), dir_.get(), name_.c_str(), RENAME_NOREPLACE);
    if (r < 0 && replace == Replace::kNo && errno == EINVAL) {
        // A file system without RENAME_NOREPLACE: a link refuses an existing
        // name as well, and the temporary name then goes.
        r = ::linkat(dir_.get(), tmp_.c_str(), dir_.get(), name_.c_str(), 0);
        if (r == 0) ::unlinkat(dir_.get(), tmp_.c_str(), 0);
    }
    if (r < 0) {
        const int e = errno;
        discard();
        if (e == EEXIST) return fail(shown_ + " already exists", EEXIST);
        errno = e;
        return fail_errno("rename to " + shown_);
    }
    tmp_.clear();
    fd_.reset();
    if (synced_ && ::fsync(dir_.get()) < 0) return fail_errno("fsync the directory of " + shown_);
    return {};
}

void AtomicFile::discard() {
    if (!tmp_.empty()) ::unlinkat(dir_.get(), tmp_.c_str(), 0);
    tmp_.clear();
    fd_.reset();
}

Result<> write_file_atomic(const std::string& path, const void* data, size_t size, Durable durable) {
    auto [dir_path, name] = split_path(path);
    auto dir = DirFd::open(dir_path);
    if (!dir) return std::unexpected(dir.error());
    auto file = AtomicFile::create(*dir, name);
    if (!file) return std::unexpected(file.error());
    if (auto r = file->write(data, size); !r) return r;
    if (durable == Durable::kYes)
        if (auto r = file->sync(); !r) return r;
    return file->commit(AtomicFile::Replace::kYes);
}

}  // namespace vessel
