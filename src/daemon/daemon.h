// vesseld's core: the table of VMs (one VMM process each), their records in
// the store, the monitor that notices exits, and the HTTP API over them.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "api/http.h"
#include "base/fd.h"
#include "base/result.h"
#include "daemon/cgroups.h"
#include "daemon/state_dir.h"
#include "daemon/store.h"
#include "daemon/vm_spec.h"

namespace vessel::daemon {

struct DaemonOptions {
    std::string socket = "/run/vessel/vesseld.sock";
    std::string state_dir = "/var/lib/vessel";
    std::string state_group;  // a group that may read STATE (not the database); "" → private
    std::string run_dir;      // API sockets of the VMMs (RUN/vms/ID.sock); "" → the socket's directory
    std::string vessel;       // the `vessel` binary; "" → beside vesseld
    std::string cgroup_parent = "vessel";
    std::string cgroup_root;  // a cgroup2 directory to use instead of detecting; "" → detect
    bool use_cgroups = true;
    std::string vmm_api = "auto";  // auto|yes|no: does `vessel run` take --api-sock?
    bool jail = true;              // false: VMMs run with --no-jail (docs/security.md)
    // The user and group jailed VMMs run as (--vmm-user); nullopt: root
    // without capabilities, the jail's default.
    std::optional<VmmUser> vmm_user;
};

class Daemon {
public:
    // Opens the store, re-attaches to the VMs a previous instance left
    // running (never restarting any), and serves the API. SIGCHLD must be
    // blocked in every thread of the process (the monitor waits for it).
    static Result<std::unique_ptr<Daemon>> start(DaemonOptions options);
    ~Daemon();
    // Stops serving. VMs keep running: a later instance takes them over.
    void stop();

    std::string cgroup_mode() const { return cgroups_.mode(); }
    bool vmm_api() const { return vmm_api_; }

private:
    struct Vm;
    using VmPtr = std::shared_ptr<Vm>;

    Daemon() = default;
    api::Router routes();
    Result<> reload();
    void adopt_orphans();
    void monitor_loop();
    void on_exit(pid_t pid, int wait_status);
    void exit_locked(pid_t pid, int wait_status);
    void mark_exited(Vm& vm, std::optional<int> status, std::optional<int> signal, const std::string& why);
    void persist(const Vm& vm);
    void unrecord(const std::string& id);
    void note_unsaved(const Result<>& write);
    void flush_records();
    VmPtr find(const std::string& ref, api::Response& not_found);
    bool wait_exit(const VmPtr& vm, std::chrono::milliseconds timeout);
    void wait_api_socket(const VmPtr& vm);
    void on_api_socket_events();
    void signal_vm(const Vm& vm, int sig);
    api::json vm_json(const Vm& vm) const;
    std::string lacking_controllers(const std::vector<std::string>& lacking) const;
    std::string new_id();

    api::Response create(const api::Request& req, bool restore);
    api::Response list(const api::Request& req);
    api::Response inspect(const api::Request& req);
    api::Response pause_resume(const api::Request& req, bool pause);
    api::Response snapshot(const api::Request& req);
    api::Response stop_vm(const api::Request& req);
    api::Response kill_vm(const api::Request& req);
    api::Response remove(const api::Request& req);
    api::Response logs(const api::Request& req);
    api::Response stats(const api::Request& req);
    api::Response vm_metrics(const api::Request& req);
    api::Response prometheus(const api::Request& req);
    api::Response healthz(const api::Request& req);

    DaemonOptions options_;
    bool vmm_api_ = false;
    bool vmm_restore_ = false;
    bool vmm_jailed_ = false;  // VMMs run jailed, each writing snapshots under snapshot_dir() only
    // STATE/snapshots/ID: kept when the VM is removed, like any snapshot.
    std::string snapshot_dir(const Vm& vm) const;
    StateAccess access_;
    std::atomic<bool> unsaved_logged_{false};  // a failed record write was logged; the next success is
    Cgroups cgroups_;
    std::unique_ptr<Store> store_;
    std::unique_ptr<api::Server> server_;

    mutable std::mutex mutex_;
    std::condition_variable exited_cv_;
    std::map<std::string, VmPtr> vms_;       // by id
    std::map<pid_t, std::string> children_;  // pid → id, for VMs this instance spawned
    std::map<pid_t, int> unclaimed_exits_;   // reaped before their VM was registered
    Fd inotify_;                             // watches RUN/vms for the VMMs' API sockets
    uint64_t created_total_ = 0;
    uint64_t create_failures_total_ = 0;

    std::atomic<bool> stopping_{false};
    std::thread monitor_;
};

}  // namespace vessel::daemon
