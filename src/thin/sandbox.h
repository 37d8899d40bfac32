// The file-system view of a thin guest.
//
// The guest sees one read-only tree (--root) plus writable directories
// (--rw HOST:GUEST), and synthetic /dev entries. Guest paths are normalised
// lexically against the guest's cwd, matched to the longest mount prefix, and
// the rest is resolved by the kernel with openat2(RESOLVE_IN_ROOT): `..`,
// absolute and relative symlinks all stay inside the mount, even under races.
#pragma once

#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace vessel::thin {

struct MountSpec {
    std::string host_dir;
    std::string guest_path;
};

class Sandbox {
public:
    struct Mount {
        std::string guest_path;  // normalised, "/" for the root
        Fd dir;                  // O_PATH directory
        bool writable;
        std::string host_dir;
    };

    // `root` empty: an empty directory. Errors name the offending flag value.
    static Result<Sandbox> create(const std::string& root, const std::vector<MountSpec>& rw);

    // Absolute, normalised guest path for `path` relative to `base` (a guest
    // directory). No "." or ".." components, no trailing slash.
    static std::string normalize(const std::string& base, const std::string& path);

    struct Location {
        const Mount* mount;
        std::string rel;  // relative to the mount, "." for its root
    };
    Location locate(const std::string& abs) const;
    // True when `abs` (an absolute guest path, not empty) names a file of a
    // read-only mount. The synthetic devices are not on any mount: false.
    bool read_only(const std::string& abs) const {
        return classify(abs) == Special::kNone && !locate(abs).mount->writable;
    }

    // Guest paths the sandbox answers itself, never from any mount:
    // "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom".
    // Everything else under /dev, /proc and /sys does not exist.
    enum class Special { kNone, kDevice, kHidden };
    static Special classify(const std::string& abs);

    // open(2) of an absolute guest path. Returns -errno on failure.
    // Refuses writes on read-only mounts (EROFS) and device nodes (EACCES).
    Result<Fd> open(const std::string& abs, int flags, unsigned mode) const;
    // O_PATH handle of `abs` itself (no final symlink follow when nofollow).
    Result<Fd> open_path(const std::string& abs, bool nofollow) const;
    // O_PATH handle of the parent directory of `abs` and its last component;
    // `need_write` fails with EROFS on read-only mounts.
    Result<Fd> open_parent(const std::string& abs, std::string& name, bool need_write,
                           const Mount** mount = nullptr) const;

    const std::vector<Mount>& mounts() const { return mounts_; }
    // The VMM's jail (jail/) shows mount `index`'s directory at `path`:
    // serve it from there. Fails, changing nothing, unless `path` is the
    // same directory (device and inode) the mount holds.
    Result<> reopen_at(size_t index, const std::string& path);

private:
    std::vector<Mount> mounts_;  // longest guest_path first
};

}  // namespace vessel::thin
