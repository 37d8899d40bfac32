// /vms/{id}/pause, resume, snapshot, stop and kill: requests passed to a VMM.
#include "daemon/daemon_impl.h"

#include <signal.h>
#include <unistd.h>

#include "base/safe_file.h"
#include "base/text.h"

namespace vessel::daemon {

namespace {

int signal_number(const std::string& name) {
    static const std::map<std::string, int> names = {{"KILL", SIGKILL}, {"TERM", SIGTERM}, {"INT", SIGINT},
                                                     {"HUP", SIGHUP},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
                                                     {"USR2", SIGUSR2}};
    std::string n = name.starts_with("SIG") ? name.substr(3) : name;
    auto it = names.find(n);
    return it == names.end() ? 0 : it->second;
}

}  // namespace

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
            r = api::error(a->status >= 400 ? a->status : 502, "vmm_error",
                           "the VMM answered " + std::to_string(a->status));
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
        if (type != "full" && type != "diff")
            return api::error(422, "invalid_value", "type: must be \"full\" or \"diff\"");
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
    // A jailed VMM reaches no host path but its snapshot_dir: the daemon
    // opens (creating, 0700) the directory and passes it with the request.
    std::optional<DirFd> dir;
    bool created = false;
    if (vmm_jailed_ && !path.starts_with(snapshot_dir(*vm) + "/")) {
        auto d = DirFd::create(path, &created);
        if (!d) return api::error(422, "invalid_value", "path: " + d.error().message);
        dir = std::move(*d);
    }
    json fwd = {{"path", path}, {"type", type}};
    auto a = call_vmm(sock, "PUT", "/vm/snapshot", &fwd, std::chrono::minutes(30), dir ? dir->get() : -1);
    if (created && !(a && a->status == 200)) ::rmdir(path.c_str());  // only if empty, as the VMM would
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
        if (!vm->live() || vm->state == "creating")
            return invalid_state(vm->name + " is " + vm->state + ", not running");
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
        if (!vm->live() || vm->state == "creating")
            return invalid_state(vm->name + " is " + vm->state + ", not running");
    }
    signal_vm(*vm, sig);
    if (sig == SIGKILL) wait_exit(vm, std::chrono::seconds(5));
    std::lock_guard lock(mutex_);
    Response r;
    r.body = vm_json(*vm);
    return r;
}

}  // namespace vessel::daemon
