// /healthz, /vms/{id}/stats, /vms/{id}/metrics and /metrics (Prometheus).
#include "daemon/daemon_impl.h"

#include <unistd.h>

#include "daemon/metrics.h"
#include "daemon/process.h"

namespace vessel::daemon {

Response Daemon::healthz(const Request& req) {
    if (auto e = only_query(req, {})) return *e;
    std::lock_guard lock(mutex_);
    json counts = {{"total", vms_.size()}, {"running", 0}, {"paused", 0}, {"exited", 0}, {"lost", 0}, {"orphaned", 0}};
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
    if (cs.memory_bytes)
        mem = *cs.memory_bytes;
    else
        mem = rss;
    if (cs.memory_limit) limit = *cs.memory_limit;
    if (cs.pids) pids = *cs.pids;
    out["timestamp_ns"] = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
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
            if (vm->state != "running" && vm->state != "paused" && vm->state != "lost" && vm->state != "orphaned")
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
