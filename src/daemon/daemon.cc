#include "daemon/daemon.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "base/text.h"
#include "daemon/metrics.h"
#include "daemon/process.h"

namespace vessel::daemon {

using api::json;
using api::Request;
using api::Response;
namespace fs = std::filesystem;

struct Daemon::Vm {
    std::string id, name, dir;
    std::string api_sock;  // RUN/vms/ID.sock (older records: DIR/api.sock)
    VmSpec spec;
    std::string state = "creating";  // creating|running|paused|exited|lost|orphaned
    pid_t pid = 0;
    uint64_t starttime = 0;
    bool child = false;    // spawned by this instance (reaped with waitpid)
    bool vmm_api = false;  // the VMM serves DIR/api.sock
    std::string created_at, started_at, exited_at, error;
    std::optional<int> exit_status, exit_signal;
    bool oom_killed = false;          // its memory limit ended it
    bool pids_limit_reached = false;  // its pids limit refused a fork
    Placement cgroup;
    json last_snapshot;  // null or the VMM's answer to the last snapshot
    // While POST /vms waits for the VMM's API socket (guarded by mutex_):
    bool api_ready = false;        // the socket was created
    std::condition_variable wake;  // api_ready or state changed

    std::string api_socket() const { return api_sock.empty() ? dir + "/api.sock" : api_sock; }
    std::string console() const { return dir + "/console.log"; }
    bool live() const {
        return state == "running" || state == "paused" || state == "lost" || state == "creating" ||
               state == "orphaned";
    }

    json record() const {
        return {{"id", id},
                {"name", name},
                {"dir", dir},
                {"api_socket", api_sock},
                {"spec", spec.to_json()},
                {"state", state},
                {"pid", pid},
                {"starttime", starttime},
                {"vmm_api", vmm_api},
                {"created_at", created_at},
                {"started_at", started_at},
                {"exited_at", exited_at},
                {"error", error},
                {"exit_status", exit_status ? json(*exit_status) : json(nullptr)},
                {"exit_signal", exit_signal ? json(*exit_signal) : json(nullptr)},
                {"oom_killed", oom_killed},
                {"pids_limit_reached", pids_limit_reached},
                {"cgroup", cgroup.to_json()},
                {"last_snapshot", last_snapshot}};
    }
    static std::shared_ptr<Vm> from_record(const json& r) {
        auto vm = std::make_shared<Vm>();
        vm->id = r.value("id", "");
        vm->name = r.value("name", vm->id);
        vm->dir = r.value("dir", "");
        vm->api_sock = r.value("api_socket", "");
        vm->spec = spec_from_json(r.value("spec", json::object()));
        vm->state = r.value("state", "exited");
        vm->pid = r.value("pid", 0);
        vm->starttime = r.value("starttime", uint64_t{0});
        vm->vmm_api = r.value("vmm_api", false);
        vm->created_at = r.value("created_at", "");
        vm->started_at = r.value("started_at", "");
        vm->exited_at = r.value("exited_at", "");
        vm->error = r.value("error", "");
        if (r.contains("exit_status") && r["exit_status"].is_number_integer()) vm->exit_status = r["exit_status"].get<int>();
        if (r.contains("exit_signal") && r["exit_signal"].is_number_integer()) vm->exit_signal = r["exit_signal"].get<int>();
        vm->oom_killed = r.value("oom_killed", false);
        vm->pids_limit_reached = r.value("pids_limit_reached", false);
        vm->cgroup = Placement::from_json(r.value("cgroup", json::object()));
        vm->last_snapshot = r.value("last_snapshot", json(nullptr));
        return vm;
    }
};

namespace {

Response bad_request(const std::string& m) { return api::error(400, "bad_request", m); }
Response invalid_state(const std::string& m) { return api::error(409, "invalid_state", m); }

// The JSON body as an object, or the 400 to answer.
std::optional<Response> parse_body(const Request& req, json& out) {
    auto b = req.json_body();
    if (!b) return bad_request(b.error().message);
    out = std::move(*b);
    return std::nullopt;
}

// Routes without parameters accept an empty body or {} only.
std::optional<Response> no_fields(const Request& req) {
    json b;
    if (auto e = parse_body(req, b)) return e;
    if (!b.empty()) return bad_request("unknown field " + b.begin().key() + " (this request takes no fields)");
    return std::nullopt;
}

// Query parameters: only `allowed` may appear.
std::optional<Response> only_query(const Request& req, std::initializer_list<const char*> allowed) {
    for (const auto& [k, v] : req.query) {
        bool ok = false;
        for (const char* a : allowed) ok |= k == a;
        if (!ok) return bad_request("unknown query parameter " + k);
    }
    return std::nullopt;
}

std::optional<uint64_t> query_number(const Request& req, const char* key, Response& err) {
    auto it = req.query.find(key);
    if (it == req.query.end()) return std::nullopt;
    const std::string& v = it->second;
    if (v.empty() || v.size() > 18 || v.find_first_not_of("0123456789") != std::string::npos) {
        err = bad_request(std::string("query parameter ") + key + ": expected a non-negative integer");
        return std::nullopt;
    }
    return std::stoull(v);
}

bool query_flag(const Request& req, const char* key) {
    auto it = req.query.find(key);
    return it != req.query.end() && (it->second.empty() || it->second == "1" || it->second == "true");
}

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

std::vector<std::string> cmdline(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
    std::vector<std::string> argv;
    for (std::string a; std::getline(in, a, '\0');) argv.push_back(a);
    return argv;
}

// The process runs a `vessel` binary (a check against a reused pid).
bool runs_vessel(pid_t pid) {
    auto argv = cmdline(pid);
    return !argv.empty() && fs::path(argv[0]).filename().string().starts_with("vessel");
}

// Both paths name the same file.
bool same_file(const std::string& a, const std::string& b) {
    struct stat sa, sb;
    return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

// Why a VM ended, as its limits tell it, in front of the plain reason `why`.
std::string limit_reason(bool oom_killed, bool pids_limit_reached, bool died_of_signal, const Limits& limits,
                         const std::string& why) {
    std::string s;
    if (oom_killed)
        s = "the VM reached its memory limit" +
            (limits.memory ? " of " + std::to_string(*limits.memory) + " bytes (limits.memory)" : std::string()) +
            " and the kernel's OOM killer killed " + (died_of_signal ? "its VMM" : "a process of it");
    if (pids_limit_reached)
        s += (s.empty() ? "" : "; ") + std::string("the VM reached its pids limit") +
             (limits.pids ? " of " + std::to_string(*limits.pids) + " (limits.pids)" : std::string()) +
             ": the VMM could not start a thread or process";
    if (s.empty()) return why;
    return why.empty() ? s : s + " (" + why + ")";
}

int signal_number(const std::string& name) {
    static const std::map<std::string, int> names = {{"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},
                                                     {"HUP", SIGHUP},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
                                                     {"USR2", SIGUSR2}};
    std::string n = name.starts_with("SIG") ? name.substr(3) : name;
    auto it = names.find(n);
    return it == names.end() ? 0 : it->second;
}

// api::call to a VMM's socket. A VMM creates its socket (bind) a moment
// before it listens, and POST /vms answers on the first: a refused
// connection is tried again for up to 100 ms.
Result<Response> call_vmm(const std::string& socket, const std::string& method, const std::string& target,
                          const json* body, std::chrono::milliseconds timeout) {
    for (int attempt = 0;; ++attempt) {
        auto r = api::call(socket, method, target, body, timeout);
        if (r || r.error().sys_errno != ECONNREFUSED || attempt == 20) return r;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
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

    if (o.vmm_api == "auto") {
        d->vmm_api_ = capture(o.vessel, {"run", "--help"}).find("--api-sock") != std::string::npos;
    } else {
        d->vmm_api_ = o.vmm_api == "yes";
    }
    d->vmm_restore_ = d->vmm_api_ && capture(o.vessel, {"--help"}).find("restore") != std::string::npos;
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
    if (d->inotify_ && ::inotify_add_watch(d->inotify_.get(), (o.run_dir + "/vms").c_str(),
                                           IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0)
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

// A change that cannot be written now (a full disk) is kept by the store and
// written by the monitor later (flush_records); only the first failure of
// a run of them is logged.
void Daemon::persist(const Vm& vm) { note_unsaved(store_->save(vm.id, vm.name, vm.record())); }

void Daemon::unrecord(const std::string& id) { note_unsaved(store_->forget(id)); }

void Daemon::note_unsaved(const Result<>& write) {
    if (!write && !unsaved_logged_.exchange(true))
        std::fprintf(stderr,
                     "vesseld: %s — kept in memory and written again every 0.4 s until it succeeds (further failures "
                     "are not logged)\n",
                     write.error().message.c_str());
}

void Daemon::flush_records() {
    if (store_->unsaved() == 0 || store_->flush() > 0) return;
    if (unsaved_logged_.exchange(false))
        std::fprintf(stderr, "vesseld: the VM records kept in memory are written to the database now\n");
}

Result<> Daemon::reload() {
    auto records = store_->load_all();
    if (!records) return std::unexpected(records.error());
    for (const auto& r : *records) {
        auto vm = Vm::from_record(r);
        if (vm->id.empty()) continue;
        if (vm->live()) {
            // A daemon that died between spawn and commit left no pid: the
            // VMM carries the VM's id in its environment (older daemons
            // wrote DIR/pid instead).
            if (vm->pid == 0) {
                std::ifstream pf(vm->dir + "/pid");
                pf >> vm->pid >> vm->starttime;
            }
            if (vm->pid == 0) {
                if (auto pid = find_process_group_by_env("VESSEL_VM_ID=" + vm->id)) {
                    vm->pid = *pid;
                    vm->starttime = process_starttime(*pid).value_or(0);
                }
            }
            bool ours = vm->pid > 0 && same_process(vm->pid, vm->starttime) && runs_vessel(vm->pid);
            if (!ours) {
                vm->state = "exited";
                vm->exited_at = vm->exited_at.empty() ? now_rfc3339(true) : vm->exited_at;
                vm->error = "the VMM process ended while vesseld was not running (exit status unknown)";
                auto events = Cgroups::limit_events(vm->cgroup);
                vm->oom_killed = events.oom_killed(false);
                vm->pids_limit_reached = events.pids_limit_reached();
                vm->error = limit_reason(vm->oom_killed, vm->pids_limit_reached, false, vm->spec.limits, vm->error);
            } else if (vm->state == "orphaned") {
                // Found without a record by an earlier instance: still nothing known but its process.
            } else if (vm->vmm_api) {
                auto answer = api::call(vm->api_socket(), "GET", "/vm", nullptr, std::chrono::seconds(2));
                if (answer && answer->status == 200 && answer->body.is_object()) {
                    std::string s = answer->body.value("state", "running");
                    vm->state = s == "paused" ? "paused" : "running";
                    vm->error.clear();
                } else {
                    vm->state = "lost";
                    vm->error = "the VMM process is alive but its API socket does not answer; stop or kill it";
                }
            } else {
                vm->state = "running";
            }
            vm->child = false;
            persist(*vm);
            std::fprintf(stderr, "vesseld: VM %s (%s): %s%s\n", vm->id.c_str(), vm->name.c_str(), vm->state.c_str(),
                         vm->state == "exited" ? "" : (" (re-attached, pid " + std::to_string(vm->pid) + ")").c_str());
        }
        vms_[vm->id] = vm;
    }
    adopt_orphans();
    return {};
}

// VMMs of this state directory that have no record (the daemon could not
// write it, e.g. on a full disk, in a version that started VMs anyway): they
// are listed as "orphaned" so they can be stopped and removed. A VMM is
// found by the VESSEL_VM_ID in its environment, and is this daemon's if its
// stdout is STATE/vms/ID/console.log.
void Daemon::adopt_orphans() {
    for (const auto& p : find_vmm_processes()) {
        if (!looks_like_vm_id(p.vm_id) || vms_.count(p.vm_id)) continue;
        auto vm = std::make_shared<Vm>();
        vm->id = p.vm_id;
        vm->dir = options_.state_dir + "/vms/" + vm->id;
        if (!same_file("/proc/" + std::to_string(p.pid) + "/fd/1", vm->console()) || !runs_vessel(p.pid)) continue;
        vm->pid = p.pid;
        vm->starttime = process_starttime(p.pid).value_or(0);
        vm->state = "orphaned";
        vm->name = "orphan-" + vm->id.substr(0, 8);
        for (const auto& [id, other] : vms_)
            if (other->name == vm->name) vm->name = vm->id;
        std::string sock = options_.run_dir + "/vms/" + vm->id + ".sock";
        vm->vmm_api = ::access(sock.c_str(), F_OK) == 0;
        if (vm->vmm_api) vm->api_sock = sock;
        auto argv = cmdline(p.pid);
        vm->spec.program = argv.empty() ? "" : argv[0];
        vm->spec.args.assign(argv.begin() + (argv.empty() ? 0 : 1), argv.end());
        vm->spec.mem_bytes = 0;  // unknown
        vm->created_at = now_rfc3339(true);
        vm->cgroup = cgroups_.existing(vm->id);
        vm->error = "vesseld has no record of this VM (it was never written); stop or remove it";
        persist(*vm);
        vms_[vm->id] = vm;
        std::fprintf(stderr, "vesseld: VM %s: orphaned (a VMM without a record, pid %d): stop or remove it\n",
                     vm->id.c_str(), vm->pid);
    }
}

void Daemon::monitor_loop() {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    // SIGCHLD is blocked in every thread: it is read here, through a signalfd
    // polled together with the inotify events of VMs being created.
    Fd sigfd(::signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
    auto last_poll = std::chrono::steady_clock::now();
    while (!stopping_) {
        pollfd p[2] = {{sigfd.get(), POLLIN, 0}, {inotify_.get(), POLLIN, 0}};
        ::poll(p, 2, sigfd ? 200 : 20);
        if (p[0].revents) {
            signalfd_siginfo info[16];
            while (::read(sigfd.get(), info, sizeof info) > 0) {
            }
        }
        if (p[1].revents) on_api_socket_events();
        for (;;) {
            int status;
            pid_t pid = ::waitpid(-1, &status, WNOHANG);
            if (pid <= 0) break;
            on_exit(pid, status);
        }
        // VMs of a previous instance are not our children: poll them.
        auto now = std::chrono::steady_clock::now();
        if (now - last_poll < std::chrono::milliseconds(400)) continue;
        last_poll = now;
        flush_records();
        std::lock_guard lock(mutex_);
        for (auto& [id, vm] : vms_) {
            if (vm->child || !vm->live() || vm->state == "creating") continue;
            if (!same_process(vm->pid, vm->starttime)) {
                mark_exited(*vm, std::nullopt, std::nullopt,
                            "the VMM process (started by an earlier vesseld) ended; exit status unknown");
            }
        }
    }
}

void Daemon::on_exit(pid_t pid, int wait_status) {
    std::lock_guard lock(mutex_);
    exit_locked(pid, wait_status);
}

void Daemon::exit_locked(pid_t pid, int wait_status) {
    auto it = children_.find(pid);
    if (it == children_.end()) {
        unclaimed_exits_[pid] = wait_status;
        return;
    }
    auto vm = vms_.count(it->second) ? vms_[it->second] : nullptr;
    children_.erase(it);
    if (!vm) return;
    if (WIFEXITED(wait_status)) mark_exited(*vm, WEXITSTATUS(wait_status), std::nullopt, "");
    else if (WIFSIGNALED(wait_status))
        mark_exited(*vm, 128 + WTERMSIG(wait_status), WTERMSIG(wait_status),
                    std::string("the VMM process was killed by signal ") + strsignal(WTERMSIG(wait_status)));
}

// Called with mutex_ held.
void Daemon::mark_exited(Vm& vm, std::optional<int> status, std::optional<int> signal, const std::string& why) {
    vm.state = "exited";
    vm.exit_status = status;
    vm.exit_signal = signal;
    vm.exited_at = now_rfc3339(true);
    // The VM's groups stay until it is removed: their counters tell whether a limit ended it.
    auto events = Cgroups::limit_events(vm.cgroup);
    vm.oom_killed = events.oom_killed(signal == SIGKILL);
    vm.pids_limit_reached = events.pids_limit_reached();
    bool failed = status != 0;  // also unknown (nullopt)
    std::string reason = failed ? limit_reason(vm.oom_killed, vm.pids_limit_reached, signal.has_value(),
                                               vm.spec.limits, why)
                                : why;
    if (!reason.empty()) vm.error = reason;
    persist(vm);
    exited_cv_.notify_all();
    vm.wake.notify_all();
}

Daemon::VmPtr Daemon::find(const std::string& ref, Response& not_found) {
    std::lock_guard lock(mutex_);
    if (auto it = vms_.find(ref); it != vms_.end()) return it->second;
    VmPtr match;
    for (auto& [id, vm] : vms_)
        if (vm->name == ref) return vm;
    int n = 0;
    if (ref.size() >= 3)
        for (auto& [id, vm] : vms_)
            if (id.starts_with(ref)) match = vm, ++n;
    if (n == 1) return match;
    not_found = n > 1 ? api::error(400, "ambiguous", "\"" + ref + "\" matches " + std::to_string(n) + " VMs")
                      : api::error(404, "not_found", "no VM with id or name \"" + ref + "\"");
    return nullptr;
}

bool Daemon::wait_exit(const VmPtr& vm, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return exited_cv_.wait_for(lock, timeout, [&] { return vm->state == "exited"; });
}

// Until the VMM has created its API socket, has ended, or 10 s have passed.
// The monitor wakes this on the socket's inotify event (RUN/vms is watched)
// or on the exit; without inotify it looks every 2 ms.
void Daemon::wait_api_socket(const VmPtr& vm) {
    const std::string sock = vm->api_socket();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::unique_lock lock(mutex_);
    while (vm->state != "exited" && !vm->api_ready && std::chrono::steady_clock::now() < deadline) {
        lock.unlock();
        bool exists = ::access(sock.c_str(), F_OK) == 0;
        lock.lock();
        if (exists) break;
        vm->wake.wait_for(lock, std::chrono::milliseconds(inotify_ ? 100 : 2));
    }
}

// Reads the inotify events of RUN/vms: a VMM has created ID.sock.
void Daemon::on_api_socket_events() {
    alignas(inotify_event) char buf[4096];
    ssize_t n;
    while ((n = ::read(inotify_.get(), buf, sizeof buf)) > 0) {
        std::lock_guard lock(mutex_);
        for (char* p = buf; p < buf + n;) {
            auto* e = reinterpret_cast<inotify_event*>(p);
            p += sizeof(inotify_event) + e->len;
            if (e->mask & IN_Q_OVERFLOW) {  // events were lost: every waiter looks again
                for (auto& [id, vm] : vms_) vm->wake.notify_all();
                continue;
            }
            std::string_view name(e->len ? e->name : "");
            if (!name.ends_with(".sock")) continue;
            if (auto it = vms_.find(std::string(name.substr(0, name.size() - 5))); it != vms_.end()) {
                it->second->api_ready = true;
                it->second->wake.notify_all();
            }
        }
    }
}

// Signals the VMM's process group (the VMM and its helpers), after checking
// that the pid still names the process we started.
void Daemon::signal_vm(const Vm& vm, int sig) {
    if (vm.pid <= 0) return;
    if (!vm.child && !same_process(vm.pid, vm.starttime)) return;
    if (::kill(-vm.pid, sig) < 0) ::kill(vm.pid, sig);
}

json Daemon::vm_json(const Vm& vm) const {
    json limits = {{"cpus", vm.spec.limits.cpus ? json(*vm.spec.limits.cpus) : json(nullptr)},
                   {"memory", vm.spec.limits.memory ? json(*vm.spec.limits.memory) : json(nullptr)},
                   {"pids", vm.spec.limits.pids ? json(*vm.spec.limits.pids) : json(nullptr)}};
    json rw = json::array();
    for (const auto& m : vm.spec.rw) rw.push_back({{"host", m.host}, {"guest", m.guest}});
    json env = json::object();
    for (const auto& [k, v] : vm.spec.env) env[k] = v;
    return {{"id", vm.id},
            {"name", vm.name},
            {"state", vm.state},
            {"pid", vm.pid > 0 ? json(vm.pid) : json(nullptr)},
            {"program", vm.spec.program},
            {"args", vm.spec.args},
            {"mem_bytes", vm.spec.mem_bytes},
            {"root", vm.spec.root.empty() ? json(nullptr) : json(vm.spec.root)},
            {"rw", rw},
            {"env", env},
            {"trace_syscalls", vm.spec.trace_syscalls},
            {"created_at", vm.created_at},
            {"started_at", vm.started_at.empty() ? json(nullptr) : json(vm.started_at)},
            {"exited_at", vm.exited_at.empty() ? json(nullptr) : json(vm.exited_at)},
            {"exit_status", vm.exit_status ? json(*vm.exit_status) : json(nullptr)},
            {"exit_signal", vm.exit_signal ? json(*vm.exit_signal) : json(nullptr)},
            {"oom_killed", vm.oom_killed},
            {"pids_limit_reached", vm.pids_limit_reached},
            {"error", vm.error.empty() ? json(nullptr) : json(vm.error)},
            {"restored_from", vm.spec.restore_from.empty() ? json(nullptr) : json(vm.spec.restore_from)},
            {"adopted", !vm.child && vm.live()},
            {"vmm_api", vm.vmm_api},
            {"cgroup",
             {{"mode", vm.cgroup.mode},
              {"paths", vm.cgroup.paths},
              {"limits", limits},
              {"unenforced", vm.cgroup.unenforced}}},
            {"dir", vm.dir},
            {"console_log", vm.console()},
            {"api_socket", vm.vmm_api ? json(vm.api_socket()) : json(nullptr)},
            {"last_snapshot", vm.last_snapshot}};
}

api::Router Daemon::routes() {
    api::Router r;
    r.add("GET", "/healthz", [this](const Request& q) { return healthz(q); });
    r.add("GET", "/metrics", [this](const Request& q) { return prometheus(q); });
    r.add("POST", "/vms", [this](const Request& q) { return create(q, false); });
    r.add("GET", "/vms", [this](const Request& q) { return list(q); });
    r.add("POST", "/vms/restore", [this](const Request& q) { return create(q, true); });
    r.add("GET", "/vms/{id}", [this](const Request& q) { return inspect(q); });
    r.add("DELETE", "/vms/{id}", [this](const Request& q) { return remove(q); });
    r.add("PUT", "/vms/{id}/pause", [this](const Request& q) { return pause_resume(q, true); });
    r.add("PUT", "/vms/{id}/resume", [this](const Request& q) { return pause_resume(q, false); });
    r.add("PUT", "/vms/{id}/snapshot", [this](const Request& q) { return snapshot(q); });
    r.add("PUT", "/vms/{id}/stop", [this](const Request& q) { return stop_vm(q); });
    r.add("PUT", "/vms/{id}/kill", [this](const Request& q) { return kill_vm(q); });
    r.add("GET", "/vms/{id}/logs", [this](const Request& q) { return logs(q); });
    r.add("GET", "/vms/{id}/stats", [this](const Request& q) { return stats(q); });
    r.add("GET", "/vms/{id}/metrics", [this](const Request& q) { return vm_metrics(q); });
    return r;
}

Response Daemon::healthz(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    std::lock_guard lock(mutex_);
    json counts = {{"total", vms_.size()}, {"running", 0}, {"paused", 0},
                   {"exited", 0},           {"lost", 0},    {"orphaned", 0}};
    for (auto& [id, vm] : vms_)
        if (counts.contains(vm->state)) counts[vm->state] = counts[vm->state].get<int>() + 1;
    Response r;
    r.body = {{"status", "ok"},
              {"version", "0.1.0"},
              {"pid", ::getpid()},
              {"state_dir", options_.state_dir},
              {"vessel", options_.vessel},
              {"vmm_api", vmm_api_},
              {"cgroup_mode", cgroups_.mode()},
              {"cgroup_controllers", cgroups_.controllers()},
              {"cgroup_note", cgroups_.reason().empty() ? json(nullptr) : json(cgroups_.reason())},
              {"vms", counts}};
    return r;
}

Response Daemon::create(const Request& req, bool restore) {
    if (auto e = only_query(req, {})) return *e;
    json body;
    if (auto e = parse_body(req, body)) return *e;
    auto spec = restore ? parse_restore(body) : parse_create(body);
    if (!spec) return spec.error().sys_errno == ERANGE ? api::error(422, "invalid_value", spec.error().message)
                                                       : bad_request(spec.error().message);
    if (restore && !vmm_restore_)
        return api::error(501, "not_supported", options_.vessel + " has no `restore` command with --api-sock yet");
    // A limit the caller asked for is enforced or the VM is not created.
    if (auto lacking = cgroups_.missing(spec->requested); !lacking.empty()) {
        std::string fields;
        for (const auto& c : lacking)
            fields += (fields.empty() ? "limits." : ", limits.") + (c == "cpu" ? std::string("cpus") : c);
        return api::error(422, "invalid_value", fields + ": cannot be enforced: " + lacking_controllers(lacking));
    }

    auto vm = std::make_shared<Vm>();
    vm->spec = std::move(*spec);
    vm->vmm_api = vmm_api_;
    vm->created_at = now_rfc3339(true);
    {
        std::lock_guard lock(mutex_);
        do vm->id = new_id();
        while (vms_.count(vm->id));
        vm->name = vm->spec.name.empty() ? "vm-" + vm->id.substr(0, 8) : vm->spec.name;
        for (auto& [id, other] : vms_)
            if (other->name == vm->name)
                return api::error(409, "name_in_use", "a VM named \"" + vm->name + "\" exists (id " + id + ")");
        vm->dir = options_.state_dir + "/vms/" + vm->id;
        if (vmm_api_) vm->api_sock = options_.run_dir + "/vms/" + vm->id + ".sock";
        vms_[vm->id] = vm;  // reserves the name
    }
    auto give_up = [&](int status, const std::string& code, const std::string& message) {
        Cgroups::remove(vm->cgroup);
        std::error_code ec;
        fs::remove_all(vm->dir, ec);
        unrecord(vm->id);
        std::lock_guard lock(mutex_);
        vms_.erase(vm->id);
        ++create_failures_total_;
        return api::error(status, code, message);
    };
    const std::string full_disk = " (free space on the file system of " + options_.state_dir + ")";
    if (::mkdir(vm->dir.c_str(), access_.vm_dir() & 0777) != 0) {
        bool full = errno == ENOSPC || errno == EDQUOT;
        std::string why = "VM not created: mkdir " + vm->dir + ": " + strerror(errno);
        return full ? give_up(507, "insufficient_storage", why + full_disk) : give_up(500, "internal", why);
    }
    CgroupJoin join;
    auto placement = cgroups_.create(vm->id, vm->spec.limits, join);
    if (!placement) return give_up(500, "cgroup_failed", placement.error().message);
    vm->cgroup = *placement;
    // Written before the spawn, or nothing is started: a VMM without a record
    // would be out of reach of the API after a restart. From here on a crash
    // leaves a record to reconcile.
    if (auto saved = store_->put(vm->id, vm->name, vm->record()); !saved)
        return give_up(507, "insufficient_storage",
                       "VM not started: its record could not be written: " + saved.error().message +
                           (saved.error().sys_errno == ENOSPC ? full_disk : ""));

    SpawnRequest sr;
    sr.path = options_.vessel;
    sr.argv = {options_.vessel};
    auto args = vmm_arguments(vm->spec, vmm_api_ ? vm->api_socket() : "");
    sr.argv.insert(sr.argv.end(), args.begin(), args.end());
    sr.envp = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "VESSEL_VM_ID=" + vm->id};
    if (const char* kvm = std::getenv("VESSEL_KVM_DEVICE")) sr.envp.push_back(std::string("VESSEL_KVM_DEVICE=") + kvm);
    // A shared rewrite/CPUID cache: without it every VMM would decode its
    // program again (tens of milliseconds for busybox) on each start.
    const char* cache = std::getenv("VESSEL_CACHE_DIR");
    sr.envp.push_back("VESSEL_CACHE_DIR=" + (cache && *cache ? std::string(cache) : options_.state_dir + "/cache"));
    sr.console = vm->console();
    sr.console_mode = access_.console_log() & 0777;
    sr.cgroups = &join;
    auto child = spawn(sr);
    if (!child) return give_up(500, "spawn_failed", child.error().message);
    join = {};
    // No pid file: if the daemon dies before the record below is committed,
    // the next one finds the VMM by its VESSEL_VM_ID (see reload()).
    {
        std::lock_guard lock(mutex_);
        vm->pid = child->pid;
        vm->starttime = child->starttime;
        vm->child = true;
        vm->started_at = now_rfc3339(true);
        vm->state = "running";
        ++created_total_;
        if (auto it = unclaimed_exits_.find(vm->pid); it != unclaimed_exits_.end()) {
            int st = it->second;
            unclaimed_exits_.erase(it);
            children_[vm->pid] = vm->id;
            exit_locked(vm->pid, st);
        } else {
            children_[vm->pid] = vm->id;
            persist(*vm);
        }
    }
    // With a control API, answer once the VM serves it (or has already
    // ended), so the caller can pause or inspect it straight away.
    if (vmm_api_) wait_api_socket(vm);
    Response r;
    r.status = 201;
    std::lock_guard lock(mutex_);
    r.body = vm_json(*vm);
    return r;
}

Response Daemon::list(const Request& req) {
    if (auto e = only_query(req, {"state"})) return *e;
    std::string filter = req.query.count("state") ? req.query.at("state") : "";
    std::lock_guard lock(mutex_);
    std::vector<VmPtr> all;
    for (auto& [id, vm] : vms_)
        if (filter.empty() || vm->state == filter) all.push_back(vm);
    std::sort(all.begin(), all.end(), [](const VmPtr& a, const VmPtr& b) { return a->created_at < b->created_at; });
    json out = json::array();
    for (auto& vm : all) out.push_back(vm_json(*vm));
    Response r;
    r.body = {{"vms", out}};
    return r;
}

Response Daemon::inspect(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    bool ask;
    std::string sock;
    {
        std::lock_guard lock(mutex_);
        ask = vm->vmm_api && (vm->state == "running" || vm->state == "paused");
        sock = vm->api_socket();
    }
    json live = nullptr;
    if (ask) {
        auto a = call_vmm(sock, "GET", "/vm", nullptr, std::chrono::seconds(2));
        if (a && a->status == 200) live = a->body;
    }
    Response r;
    std::lock_guard lock(mutex_);
    r.body = vm_json(*vm);
    r.body["vmm"] = live;
    struct stat st;
    r.body["console_bytes"] = ::stat(vm->console().c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
    return r;
}

Response Daemon::pause_resume(const Request& req, bool pause) {
    if (auto e = only_query(req, {})) return *e;
    if (auto e = no_fields(req)) return *e;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    std::string sock;
    {
        std::lock_guard lock(mutex_);
        const char* need = pause ? "running" : "paused";
        if (vm->state != need)
            return invalid_state(std::string(pause ? "pause" : "resume") + " needs a " + need + " VM; " + vm->name +
                                 " is " + vm->state);
        if (!vm->vmm_api)
            return api::error(501, "not_supported", "this VM's VMM has no control API (started without --api-sock)");
        sock = vm->api_socket();
    }
    auto a = call_vmm(sock, "PUT", pause ? "/vm/pause" : "/vm/resume", nullptr, std::chrono::seconds(30));
    if (!a) return api::error(502, "vmm_unreachable", a.error().message);
    if (a->status != 200) {
        Response r = *a;
        if (!r.body.is_object() || !r.body.contains("error"))
            r = api::error(a->status >= 400 ? a->status : 502, "vmm_error", "the VMM answered " + std::to_string(a->status));
        return r;
    }
    std::lock_guard lock(mutex_);
    if (vm->state != "exited") vm->state = pause ? "paused" : "running";
    persist(*vm);
    Response r;
    r.body = vm_json(*vm);
    return r;
}

Response Daemon::snapshot(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    json body;
    if (auto e = parse_body(req, body)) return *e;
    for (auto it = body.begin(); it != body.end(); ++it)
        if (it.key() != "path" && it.key() != "type") return bad_request("unknown field " + it.key());
    if (!body.contains("path")) return bad_request("path: required");
    if (!body["path"].is_string()) return bad_request("path: expected a string");
    std::string path = body["path"].get<std::string>();
    if (path.empty() || path.front() != '/' || path.size() > 4096 || path.find('\0') != std::string::npos)
        return api::error(422, "invalid_value", "path: must be an absolute path");
    std::string type = "full";
    if (body.contains("type")) {
        if (!body["type"].is_string()) return bad_request("type: expected a string");
        type = body["type"].get<std::string>();
        if (type != "full" && type != "diff") return api::error(422, "invalid_value", "type: must be \"full\" or \"diff\"");
    }
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    std::string sock;
    {
        std::lock_guard lock(mutex_);
        if (vm->state != "paused")
            return invalid_state("snapshot needs a paused VM; " + vm->name + " is " + vm->state + " (pause it first)");
        if (!vm->vmm_api) return api::error(501, "not_supported", "this VM's VMM has no control API");
        sock = vm->api_socket();
    }
    json fwd = {{"path", path}, {"type", type}};
    auto a = call_vmm(sock, "PUT", "/vm/snapshot", &fwd, std::chrono::minutes(30));
    if (!a) return api::error(502, "vmm_unreachable", a.error().message);
    if (a->status != 200) return *a;
    std::lock_guard lock(mutex_);
    vm->last_snapshot = a->body;
    vm->last_snapshot["taken_at"] = now_rfc3339(true);
    persist(*vm);
    Response r;
    r.body = a->body;
    r.body["id"] = vm->id;
    return r;
}

Response Daemon::stop_vm(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    json body;
    if (auto e = parse_body(req, body)) return *e;
    uint64_t timeout_s = 10;
    for (auto it = body.begin(); it != body.end(); ++it) {
        if (it.key() != "timeout_s") return bad_request("unknown field " + it.key());
        if (!it.value().is_number_unsigned()) return bad_request("timeout_s: expected a non-negative integer");
        timeout_s = it.value().get<uint64_t>();
        if (timeout_s > 600) return api::error(422, "invalid_value", "timeout_s: at most 600");
    }
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    bool graceful;
    std::string sock;
    {
        std::lock_guard lock(mutex_);
        if (!vm->live() || vm->state == "creating") return invalid_state(vm->name + " is " + vm->state + ", not running");
        graceful = vm->vmm_api && vm->state != "lost";
        sock = vm->api_socket();
    }
    bool asked = false;
    if (graceful) {
        auto a = call_vmm(sock, "PUT", "/vm/shutdown", nullptr, std::chrono::seconds(5));
        asked = a && (a->status == 202 || a->status == 200);
    }
    if (!asked) signal_vm(*vm, SIGTERM);
    bool forced = false;
    if (!wait_exit(vm, std::chrono::seconds(timeout_s))) {
        signal_vm(*vm, SIGKILL);
        forced = true;
        wait_exit(vm, std::chrono::seconds(5));
    }
    std::lock_guard lock(mutex_);
    Response r;
    r.body = vm_json(*vm);
    r.body["forced"] = forced;
    return r;
}

Response Daemon::kill_vm(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    json body;
    if (auto e = parse_body(req, body)) return *e;
    int sig = SIGKILL;
    for (auto it = body.begin(); it != body.end(); ++it) {
        if (it.key() != "signal") return bad_request("unknown field " + it.key());
        if (!it.value().is_string()) return bad_request("signal: expected a string such as \"KILL\"");
        sig = signal_number(it.value().get<std::string>());
        if (!sig) return api::error(422, "invalid_value", "signal: one of KILL TERM INT HUP QUIT USR1 USR2");
    }
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    {
        std::lock_guard lock(mutex_);
        if (!vm->live() || vm->state == "creating") return invalid_state(vm->name + " is " + vm->state + ", not running");
    }
    signal_vm(*vm, sig);
    if (sig == SIGKILL) wait_exit(vm, std::chrono::seconds(5));
    std::lock_guard lock(mutex_);
    Response r;
    r.body = vm_json(*vm);
    return r;
}

Response Daemon::remove(const Request& req) {
    if (auto e = only_query(req, {"force"})) return *e;
    if (auto e = no_fields(req)) return *e;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    {
        std::lock_guard lock(mutex_);
        if (vm->state == "creating") return invalid_state(vm->name + " is being created");
        if (vm->live() && !query_flag(req, "force"))
            return invalid_state(vm->name + " is " + vm->state + "; stop it first or use ?force=true");
    }
    bool live;
    {
        std::lock_guard lock(mutex_);
        live = vm->live();
    }
    if (live) {
        signal_vm(*vm, SIGKILL);
        if (!wait_exit(vm, std::chrono::seconds(5)))
            return api::error(500, "internal", "VM " + vm->id + " did not exit after SIGKILL");
    }
    Placement cg;
    {
        std::lock_guard lock(mutex_);
        if (!vms_.count(vm->id)) return api::error(404, "not_found", "VM " + vm->id + " was removed meanwhile");
        vms_.erase(vm->id);
        cg = vm->cgroup;
    }
    Cgroups::remove(cg);
    std::error_code ec;
    fs::remove_all(vm->dir, ec);
    if (!vm->api_sock.empty()) ::unlink(vm->api_sock.c_str());  // left behind by a killed VMM
    unrecord(vm->id);
    Response r;
    r.body = {{"id", vm->id}, {"name", vm->name}, {"removed", true}};
    return r;
}

Response Daemon::logs(const Request& req) {
    if (auto e = only_query(req, {"offset", "limit", "tail"})) return *e;
    Response err;
    err.status = 0;
    auto offset = query_number(req, "offset", err);
    auto limit = query_number(req, "limit", err);
    auto tail = query_number(req, "tail", err);
    if (err.status) return err;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    uint64_t max = std::min<uint64_t>(limit.value_or(1 << 20), 8 << 20);
    Fd fd(::open(vm->console().c_str(), O_RDONLY | O_CLOEXEC));
    std::string data;
    if (fd) {
        struct stat st;
        ::fstat(fd.get(), &st);
        uint64_t size = static_cast<uint64_t>(st.st_size);
        uint64_t from = std::min(offset.value_or(0), size);
        if (tail) {
            // The last `tail` lines, looking back at most 8 MiB.
            uint64_t back = std::min<uint64_t>(size, 8 << 20);
            std::string buf(back, '\0');
            ssize_t n = ::pread(fd.get(), buf.data(), back, static_cast<off_t>(size - back));
            buf.resize(n > 0 ? static_cast<size_t>(n) : 0);
            size_t pos = buf.size();
            if (pos && buf[pos - 1] == '\n') --pos;
            for (uint64_t lines = 0; pos > 0; --pos)
                if (buf[pos - 1] == '\n' && ++lines == *tail) break;
            if (*tail == 0) pos = buf.size();
            data = buf.substr(pos);
        } else {
            data.resize(std::min(max, size - from));
            ssize_t n = ::pread(fd.get(), data.data(), data.size(), static_cast<off_t>(from));
            data.resize(n > 0 ? static_cast<size_t>(n) : 0);
        }
    }
    Response r;
    r.content_type = "text/plain; charset=utf-8";
    r.raw = std::move(data);
    return r;
}

Response Daemon::stats(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    json out;
    pid_t pid;
    uint64_t starttime;
    bool alive, ask;
    Placement cg;
    std::string sock;
    {
        std::lock_guard lock(mutex_);
        out = {{"id", vm->id}, {"name", vm->name}, {"state", vm->state}};
        pid = vm->pid;
        starttime = vm->starttime;
        alive = vm->live() && vm->state != "creating";
        ask = alive && vm->vmm_api && vm->state != "lost";
        cg = vm->cgroup;
        sock = vm->api_socket();
    }
    alive = alive && same_process(pid, starttime);
    auto cs = Cgroups::stats(cg);
    json cpu = nullptr, rss = nullptr, mem = nullptr, limit = nullptr, pids = nullptr;
    if (alive) {
        if (auto v = process_cpu_ns(pid)) cpu = *v;
        if (auto v = process_rss(pid)) rss = *v;
    }
    if (cs.memory_bytes) mem = *cs.memory_bytes;
    else mem = rss;
    if (cs.memory_limit) limit = *cs.memory_limit;
    if (cs.pids) pids = *cs.pids;
    out["timestamp_ns"] = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
    out["cpu_ns"] = cpu;
    out["rss_bytes"] = rss;
    out["memory_bytes"] = mem;
    out["memory_limit"] = limit;
    out["pids"] = pids;
    out["vmm"] = nullptr;
    if (ask) {
        auto a = call_vmm(sock, "GET", "/vm/metrics", nullptr, std::chrono::seconds(2));
        if (a && a->status == 200) out["vmm"] = a->body;
    }
    Response r;
    r.body = out;
    return r;
}

Response Daemon::vm_metrics(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    Response nf;
    auto vm = find(req.params.at("id"), nf);
    if (!vm) return nf;
    std::string sock;
    {
        std::lock_guard lock(mutex_);
        if (!vm->vmm_api) return api::error(501, "not_supported", "this VM's VMM has no control API");
        if (vm->state != "running" && vm->state != "paused")
            return invalid_state("metrics need a running or paused VM; " + vm->name + " is " + vm->state);
        sock = vm->api_socket();
    }
    auto a = call_vmm(sock, "GET", "/vm/metrics", nullptr, std::chrono::seconds(5));
    if (!a) return api::error(502, "vmm_unreachable", a.error().message);
    if (a->status != 200) return *a;
    Response r;
    r.body = a->body;
    r.body["id"] = vm->id;
    r.body["name"] = vm->name;
    return r;
}

Response Daemon::prometheus(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    std::vector<VmSample> samples;
    DaemonSample ds;
    {
        std::lock_guard lock(mutex_);
        ds.created_total = created_total_;
        ds.create_failures_total = create_failures_total_;
        for (auto& [id, vm] : vms_) {
            ds.by_state[vm->state]++;
            if (vm->state != "running" && vm->state != "paused" && vm->state != "lost" &&
                vm->state != "orphaned")
                continue;
            VmSample s;
            s.id = vm->id;
            s.name = vm->name;
            s.state = vm->state;
            s.pid = vm->pid;
            s.starttime = vm->starttime;
            s.cgroup = vm->cgroup;
            s.socket = vm->vmm_api && vm->state != "lost" ? vm->api_socket() : "";
            samples.push_back(std::move(s));
        }
    }
    for (auto& s : samples) {
        if (!same_process(s.pid, s.starttime)) continue;
        s.cpu_ns = process_cpu_ns(s.pid);
        s.rss = process_rss(s.pid);
        auto cs = Cgroups::stats(s.cgroup);
        s.memory_bytes = cs.memory_bytes;
        if (!s.socket.empty()) {
            auto a = api::call(s.socket, "GET", "/vm/metrics", nullptr, std::chrono::seconds(1));
            if (a && a->status == 200 && a->body.is_object()) s.vmm = a->body;
        }
    }
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.raw = format_prometheus(ds, samples);
    return r;
}

}  // namespace vessel::daemon
