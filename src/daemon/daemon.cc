// vesseld: starting (store, cgroups, re-attachment, the API server) and stopping.
#include "daemon/daemon_impl.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

namespace vessel::daemon {

namespace {

std::string sibling_vessel() {
    std::error_code ec;
    auto self = fs::read_symlink("/proc/self/exe", ec);
    return ec ? "vessel" : (self.parent_path() / "vessel").string();
}

// Runs `path args...` and returns its stdout+stderr (used once at startup).
std::string capture(const std::string& path, const std::vector<std::string>& args) {
    std::string cmd = "'" + path + "'";
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += " 2>&1";
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
        char buf[4096];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
        ::pclose(p);
    }
    return out;
}

// Marks `dir` as the top of directory hierarchies (chattr +T) where the file
// system knows the flag (ext2/3/4): ext4's Orlov allocator then spreads the
// VM directories over its block groups instead of packing them into the one
// of STATE. In a packed group, each new inode skips past every inode deleted
// there in the last 5-30 s (ext4 without a journal; see find_inode_bit and
// recently_deleted): with VMs churning, 0.35-1.4 ms per directory or console
// log was measured on the CI machines, 0.08-0.1 ms with the flag.
void spread_subdirectories(const std::string& dir) {
    Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    int flags = 0;
    if (!fd || ::ioctl(fd.get(), FS_IOC_GETFLAGS, &flags) != 0 || (flags & FS_TOPDIR_FL)) return;
    flags |= FS_TOPDIR_FL;
    (void)::ioctl(fd.get(), FS_IOC_SETFLAGS, &flags);  // an optimisation: other file systems refuse it
}

}  // namespace

Result<std::unique_ptr<Daemon>> Daemon::start(DaemonOptions options) {
    std::unique_ptr<Daemon> d(new Daemon());
    d->options_ = std::move(options);
    auto& o = d->options_;
    if (o.vessel.empty()) o.vessel = sibling_vessel();
    if (::access(o.vessel.c_str(), X_OK) != 0)
        return fail(o.vessel + ": the vessel binary is not executable (use --vessel PATH)", ENOENT);
    if (!o.state_group.empty()) {
        auto gid = group_id(o.state_group);
        if (!gid) return std::unexpected(gid.error());
        d->access_.group = *gid;
    }
    auto secured = secure_state_dir(o.state_dir, d->access_);
    if (!secured) return std::unexpected(secured.error());
    for (const auto& change : *secured)
        std::fprintf(stderr, "vesseld: state permissions: %s (only %s may read the state)\n", change.c_str(),
                     o.state_group.empty() ? "vesseld's user" : ("vesseld's user and group " + o.state_group).c_str());
    spread_subdirectories(o.state_dir + "/vms");
    std::error_code ec;
    fs::create_directories(fs::path(o.socket).parent_path(), ec);
    if (o.run_dir.empty()) o.run_dir = fs::path(o.socket).parent_path().string();
    if (o.run_dir.empty()) o.run_dir = ".";
    fs::create_directories(o.run_dir + "/vms", ec);
    if (ec) return fail("run dir " + o.run_dir + ": " + ec.message(), ec.value());
    if ((o.run_dir + "/vms/0123456789ab.sock").size() >= sizeof(sockaddr_un{}.sun_path))
        return fail("--run-dir " + o.run_dir + ": too long for the VMs' Unix socket paths (at most " +
                        std::to_string(sizeof(sockaddr_un{}.sun_path) - 23) + " bytes)",
                    ENAMETOOLONG);

    std::string run_help;  // `vessel run --help`, asked once and only when needed
    auto run_has = [&](const char* flag) {
        if (run_help.empty()) run_help = capture(o.vessel, {"run", "--help"});
        return run_help.find(flag) != std::string::npos;
    };
    if (o.vmm_api == "auto") {
        d->vmm_api_ = run_has("--api-sock");
    } else {
        d->vmm_api_ = o.vmm_api == "yes";
    }
    d->vmm_restore_ = d->vmm_api_ && capture(o.vessel, {"--help"}).find("restore") != std::string::npos;
    // A `vessel` with the jail jails its VMMs unless told not to; each one
    // reaches only its own snapshot directory, which matters to snapshots
    // (through the control API) only.
    d->vmm_jailed_ = o.jail && d->vmm_api_ && run_has("--snapshot-dir");
    if (!d->vmm_api_)
        std::fprintf(stderr,
                     "vesseld: %s run does not take --api-sock: VMs run without a control API "
                     "(pause, resume, snapshot and VMM metrics are unavailable)\n",
                     o.vessel.c_str());

    if (!o.cgroup_root.empty()) {
        auto c = Cgroups::at_root(o.cgroup_root, o.cgroup_parent);
        if (!c) return std::unexpected(c.error());
        d->cgroups_ = std::move(*c);
    } else if (o.use_cgroups) {
        d->cgroups_ = Cgroups::detect(o.cgroup_parent);
    }
    std::fprintf(stderr, "vesseld: cgroups: %s%s%s\n", d->cgroups_.mode().c_str(),
                 d->cgroups_.reason().empty() ? "" : " — ", d->cgroups_.reason().c_str());
    if (auto lacking = d->cgroups_.missing({1.0, 1, 1}); !lacking.empty() && d->cgroups_.mode() != "none")
        std::fprintf(stderr,
                     "vesseld: warning: %s: VMs run without the default limits that need it, and requests that "
                     "set such limits are refused\n",
                     d->lacking_controllers(lacking).c_str());

    auto store = Store::open(o.state_dir + "/vessel.db");
    if (!store) return std::unexpected(store.error());
    d->store_ = std::move(*store);
    if (auto r = d->reload(); !r) return std::unexpected(r.error());
    std::set<std::string> recorded;
    for (const auto& [id, vm] : d->vms_) recorded.insert(id);
    for (const auto& line : remove_stray_vm_dirs(o.state_dir + "/vms", recorded))
        std::fprintf(stderr, "vesseld: %s\n", line.c_str());

    api::ServerOptions so;
    so.max_body = 64 * 1024;
    so.max_connections = 512;
    auto server = api::Server::listen(o.socket, d->routes(), so);
    if (!server) return std::unexpected(server.error());
    d->server_ = std::move(*server);
    ::chmod(o.socket.c_str(), 0660);
    d->inotify_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (d->inotify_ &&
        ::inotify_add_watch(d->inotify_.get(), (o.run_dir + "/vms").c_str(), IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0)
        d->inotify_.reset();
    d->monitor_ = std::thread([p = d.get()] { p->monitor_loop(); });
    d->server_->start();
    return d;
}

Daemon::~Daemon() { stop(); }

// Why the controllers `lacking` (cpu, memory, pids) cannot be used, for the
// log and for errors.
std::string Daemon::lacking_controllers(const std::vector<std::string>& lacking) const {
    std::string names;
    for (size_t i = 0; i < lacking.size(); ++i)
        names += (i == 0 ? "" : i + 1 == lacking.size() ? " or " : ", ") + lacking[i];
    if (cgroups_.mode() == "none")
        return options_.use_cgroups ? "vesseld found no usable cgroup hierarchy (" + cgroups_.reason() + ")"
                                    : "vesseld runs with --no-cgroups";
    if (cgroups_.mode() == "v1") return "there is no writable cgroup v1 " + names + " hierarchy";
    return "the cgroup v2 hierarchy at " + cgroups_.bases().front() + " has no " + names + " controller";
}

void Daemon::stop() {
    if (stopping_.exchange(true)) return;
    if (server_) server_->stop();
    if (monitor_.joinable()) monitor_.join();
    cgroups_.release();
    if (store_ && store_->flush() > 0)
        std::fprintf(stderr,
                     "vesseld: %zu VM record(s) could not be written and are lost with this instance; the next "
                     "vesseld finds their VMMs by their environment\n",
                     store_->unsaved());
}

std::string Daemon::new_id() {
    unsigned char b[6];
    if (::getrandom(b, sizeof b, 0) != sizeof b) {
        uint64_t t = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
        std::memcpy(b, &t, sizeof b);
    }
    char s[13];
    std::snprintf(s, sizeof s, "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
    return s;
}

}  // namespace vessel::daemon
