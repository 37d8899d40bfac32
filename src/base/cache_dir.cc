#include "base/cache_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/fd.h"

namespace vessel {

std::string cache_dir() {
    if (const char* d = std::getenv("VESSEL_CACHE_DIR"); d && *d) return d;
    if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return std::string(x) + "/vessel";
    if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.cache/vessel";
    return {};
}

bool make_dirs(const std::string& path) {
    for (size_t i = 1; i <= path.size(); ++i) {
        if (i != path.size() && path[i] != '/') continue;
        std::string part = path.substr(0, i);
        if (::mkdir(part.c_str(), 0755) < 0 && errno != EEXIST) return false;
    }
    return true;
}

std::string read_small_file(const std::string& path, size_t max) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return {};
    std::string out;
    char buf[4096];
    while (out.size() < max) {
        ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n <= 0) break;
        out.append(buf, static_cast<size_t>(n));
    }
    return out.size() <= max ? out : std::string();
}

bool write_file_atomic(const std::string& path, const void* data, size_t size) {
    std::string tmp = path + ".tmp." + std::to_string(::getpid());
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) return false;
    bool ok = write_full(fd.get(), data, size);
    fd.reset();
    if (!ok || ::rename(tmp.c_str(), path.c_str()) < 0) {
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

}  // namespace vessel
