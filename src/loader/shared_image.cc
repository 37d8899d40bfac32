#include "loader/shared_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace vessel::loader {
namespace {

// The directory, if it is ours alone and on tmpfs; created when missing.
Fd open_private_tmpfs_dir(const std::string& dir) {
    constexpr int kFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    Fd d(::open(dir.c_str(), kFlags));
    if (!d && errno == ENOENT && ::mkdir(dir.c_str(), 0700) == 0) {
        d.reset(::open(dir.c_str(), kFlags));
        if (d) (void)::fchmod(d.get(), 0700);  // whatever the umask
    }
    struct stat st;
    struct statfs fs;
    if (!d || ::fstat(d.get(), &st) != 0 || st.st_uid != ::geteuid() || (st.st_mode & 07777) != 0700 ||
        ::fstatfs(d.get(), &fs) != 0 || fs.f_type != TMPFS_MAGIC)
        return {};
    return d;
}

// Removes the oldest files until `size` more bytes fit under the limit.
bool make_room(int dirfd, uint64_t size, uint64_t max_bytes) {
    if (size > max_bytes) return false;
    Fd list(::dup(dirfd));
    DIR* d = list ? ::fdopendir(list.get()) : nullptr;
    if (!d) return false;
    (void)list.release();  // closedir closes it
    struct File {
        std::string name;
        uint64_t size;
        int64_t mtime_ns;
    };
    std::vector<File> files;
    uint64_t total = 0;
    while (dirent* e = ::readdir(d)) {
        struct stat st;
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
        files.push_back({e->d_name, static_cast<uint64_t>(st.st_size),
                         st.st_mtim.tv_sec * 1'000'000'000ll + st.st_mtim.tv_nsec});
        total += static_cast<uint64_t>(st.st_size);
    }
    ::closedir(d);
    std::sort(files.begin(), files.end(), [](const File& a, const File& b) { return a.mtime_ns < b.mtime_ns; });
    for (const File& f : files) {
        if (total + size <= max_bytes) break;
        if (::unlinkat(dirfd, f.name.c_str(), 0) == 0) total -= f.size;
    }
    return total + size <= max_bytes;
}

// Copies `size` bytes of `source` into a new file NAME in `dirfd`
// (written under a temporary name, then renamed: readers never see a
// partial copy).
std::optional<Fd> copy_in(int dirfd, const std::string& name, int source, uint64_t size, uint64_t max_bytes) {
    if (!make_room(dirfd, size, max_bytes)) return std::nullopt;
    const std::string tmp = "." + name + ".tmp." + std::to_string(::getpid());
    Fd out(::openat(dirfd, tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return std::nullopt;
    off_t at = 0;
    while (static_cast<uint64_t>(at) < size) {
        ssize_t n = ::sendfile(out.get(), source, &at, size - static_cast<uint64_t>(at));
        if (n <= 0) break;
    }
    if (static_cast<uint64_t>(at) != size || ::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
        ::unlinkat(dirfd, tmp.c_str(), 0);
        return std::nullopt;
    }
    return out;
}

}  // namespace

std::string shared_image_dir() {
    if (const char* d = std::getenv("VESSEL_SHM_DIR")) return std::string(d) == "off" ? std::string() : d;
    return "/dev/shm/vessel-" + std::to_string(::geteuid());
}

std::string shared_image_name(const std::string& key, const struct stat& st) {
    char id[96];
    std::snprintf(id, sizeof id, "-%llx-%llx-%llx-%llx.img", static_cast<unsigned long long>(st.st_dev),
                  static_cast<unsigned long long>(st.st_ino), static_cast<unsigned long long>(st.st_size),
                  static_cast<unsigned long long>(st.st_mtim.tv_sec) * 1'000'000'000ull +
                      static_cast<unsigned long long>(st.st_mtim.tv_nsec));
    return key + id;
}

std::optional<Fd> shared_image(const std::string& dir, const std::string& name, int source,
                               const struct stat& source_stat, uint64_t max_bytes) {
    const auto size = static_cast<uint64_t>(source_stat.st_size);
    if (dir.empty() || name.empty() || name.find('/') != std::string::npos || name[0] == '.') return std::nullopt;
    Fd d = open_private_tmpfs_dir(dir);
    if (!d) return std::nullopt;
    Fd f(::openat(d.get(), name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
    if (!f) return errno == ENOENT ? copy_in(d.get(), name, source, size, max_bytes) : std::nullopt;
    struct stat st;
    if (::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || st.st_mode & 077)
        return std::nullopt;
    // The name binds the copy to one version of the source (the caller's
    // job); another size is damage: copy again.
    if (static_cast<uint64_t>(st.st_size) != size) return copy_in(d.get(), name, source, size, max_bytes);
    return f;
}

}  // namespace vessel::loader
