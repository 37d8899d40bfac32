// vesseld's internals shared by its implementation files (daemon.cc: start
// and stop; vm_table.cc: the VM table and its records; monitor.cc: exits and
// API sockets; routes*.cc: the HTTP API, one file per resource). Not part of
// daemon.h's interface.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <optional>
#include <string>

#include "api/http.h"
#include "daemon/daemon.h"

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
        return state == "running" || state == "paused" || state == "lost" || state == "creating" || state == "orphaned";
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
        if (r.contains("exit_status") && r["exit_status"].is_number_integer())
            vm->exit_status = r["exit_status"].get<int>();
        if (r.contains("exit_signal") && r["exit_signal"].is_number_integer())
            vm->exit_signal = r["exit_signal"].get<int>();
        vm->oom_killed = r.value("oom_killed", false);
        vm->pids_limit_reached = r.value("pids_limit_reached", false);
        vm->cgroup = Placement::from_json(r.value("cgroup", json::object()));
        vm->last_snapshot = r.value("last_snapshot", json(nullptr));
        return vm;
    }
};

// ---- request helpers (routes.cc) -------------------------------------------

Response bad_request(const std::string& m);
Response invalid_state(const std::string& m);
// The JSON body as an object, or the 400 to answer.
std::optional<Response> parse_body(const Request& req, json& out);
// A 400 when the request has a body or query fields.
std::optional<Response> no_fields(const Request& req);
// A 400 naming the first query field outside `allowed`.
std::optional<Response> only_query(const Request& req, std::initializer_list<const char*> allowed);
// The query field `key` as a number (nullopt when absent); sets `err` when malformed.
std::optional<uint64_t> query_number(const Request& req, const char* key, Response& err);
bool query_flag(const Request& req, const char* key);
// api::call to a VMM's socket, tried again for up to 100 ms while it is
// bound but not yet listening.
Result<Response> call_vmm(const std::string& socket, const std::string& method, const std::string& target,
                          const json* body, std::chrono::milliseconds timeout, int pass_fd = -1);

// ---- why a VM ended (vm_table.cc) -------------------------------------------

std::string limit_reason(bool oom_killed, bool pids_limit_reached, bool died_of_signal, const Limits& limits,
                         const std::string& why);

}  // namespace vessel::daemon
