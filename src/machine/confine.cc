#include "machine/confine.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "machine/full_vm.h"
#include "machine/thin_vm.h"

namespace vessel::machine {
namespace {

// Set once the VMM is jailed: the one place it may write snapshots ("" for
// none). One VMM per process, and the jail is the process's.
std::optional<std::string> g_snapshot_area;

// The snapshot directory, bound writable at its own path.
Result<std::vector<jail::Bind>> snapshot_bind(const JailConfig& c, std::vector<Fd>& keep) {
    std::vector<jail::Bind> binds;
    if (c.snapshot_dir.empty()) return binds;
    std::error_code ec;
    std::string dir = std::filesystem::weakly_canonical(c.snapshot_dir, ec).string();
    if (ec || dir.empty() || dir[0] != '/')
        return fail("--snapshot-dir " + c.snapshot_dir + ": not a usable path", EINVAL);
    Fd fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return fail_errno("--snapshot-dir " + dir);
    binds.push_back({fd.get(), dir, true});
    keep.push_back(std::move(fd));
    return binds;
}

Result<> lock(const JailConfig& c, std::vector<jail::Bind> binds, std::vector<Fd>& keep) {
    auto snap = snapshot_bind(c, keep);
    if (!snap) return std::unexpected(snap.error());
    binds.insert(binds.end(), snap->begin(), snap->end());
    if (auto r = jail::lock(c.options, binds); !r) return r;
    g_snapshot_area = snap->empty() ? std::string() : snap->front().target;
    return {};
}

}  // namespace

Result<> jail_thin_vmm(ThinVm& vm, const JailConfig& config) {
    thin::Sandbox& sandbox = vm.sandbox();
    std::vector<jail::Bind> binds;
    for (size_t i = 0; i < sandbox.mounts().size(); ++i) {
        const auto& m = sandbox.mounts()[i];
        binds.push_back({m.dir.get(), jail::sandbox_target(i), m.writable});
    }
    std::vector<Fd> keep;
    if (auto r = lock(config, binds, keep); !r) return r;
    for (size_t i = 0; i < sandbox.mounts().size(); ++i)
        if (auto r = sandbox.reopen_at(i, jail::sandbox_target(i)); !r) return r;
    return {};
}

Result<> jail_full_vmm(FullVm& vm, const JailConfig& config) {
    std::vector<jail::Bind> binds;
    std::vector<Fd> keep;
    if (std::string sock = vm.vsock_socket(); !sock.empty()) {
        std::string dir = std::filesystem::path(sock).parent_path().string();
        Fd fd(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!fd) return fail_errno("jail: the vsock socket's directory " + dir);
        binds.push_back({fd.get(), dir, false});
        keep.push_back(std::move(fd));
    }
    return lock(config, binds, keep);
}

Result<> snapshot_reachable(const std::string& dir) {
    if (!g_snapshot_area) return {};
    const std::string& area = *g_snapshot_area;
    if (!area.empty() && (dir == area || (dir.starts_with(area) && dir[area.size()] == '/'))) return {};
    return fail("the VMM is jailed and reaches no host path but " +
                    (area.empty() ? std::string("none: start it with --snapshot-dir DIR")
                                  : "--snapshot-dir " + area + ": snapshot into a directory under it") +
                    ", pass the directory's descriptor with the request (SCM_RIGHTS; vesseld does), or run it with "
                    "--no-jail",
                EACCES);
}

Result<> confine_full_vmm(FullVm& vm) {
    if (auto r = jail::load_full_vmm_filters(); !r) return r;
    vm.confine_threads();
    return {};
}

}  // namespace vessel::machine
