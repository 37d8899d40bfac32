#include "base/cache_dir.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>

#include "base/safe_file.h"

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
        if (::mkdir(part.c_str(), 0700) < 0 && errno != EEXIST) return false;
    }
    return true;
}

std::string read_small_file(const std::string& path, size_t max) {
    auto data = read_regular_file(path, max);
    return data ? std::move(*data) : std::string();
}

}  // namespace vessel
