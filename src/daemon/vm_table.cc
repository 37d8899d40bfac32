// The VM table and its durable records: writing and retrying them, reloading
// them at start, adopting VMMs nobody recorded, and the JSON a VM is shown as.
#include "daemon/daemon_impl.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "base/text.h"
#include "daemon/process.h"

namespace vessel::daemon {

namespace {

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

}  // namespace

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

// Signals the VMM's process group (the VMM and its helpers), after checking
// that the pid still names the process we started.
void Daemon::signal_vm(const Vm& vm, int sig) {
    if (vm.pid <= 0) return;
    if (!vm.child && !same_process(vm.pid, vm.starttime)) return;
    if (::kill(-vm.pid, sig) < 0) ::kill(vm.pid, sig);
}

std::string Daemon::snapshot_dir(const Vm& vm) const { return options_.state_dir + "/snapshots/" + vm.id; }

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
            {"snapshot_dir", vmm_jailed_ ? json(snapshot_dir(vm)) : json(nullptr)},
            {"last_snapshot", vm.last_snapshot}};
}

}  // namespace vessel::daemon
