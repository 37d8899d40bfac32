#include "machine/api_routes.h"

#include "machine/confine.h"
#include "machine/snapshot_dir.h"

namespace vessel::machine {

using api::error;
using api::Request;
using api::Response;

namespace {

// Fails with 400 on any field outside `allowed` (typos must not be ignored).
std::optional<Response> reject_unknown(const json& body, std::initializer_list<const char*> allowed) {
    for (const auto& [key, value] : body.items()) {
        bool known = false;
        for (const char* a : allowed) known |= key == a;
        if (!known) return error(400, "unknown_field", "unknown field '" + key + "'");
    }
    return std::nullopt;
}

Response from_error(const Error& e) {
    switch (e.sys_errno) {
        case EBUSY: return error(409, "invalid_state", e.message);
        case EEXIST: return error(409, "exists", e.message);
        case EACCES: return error(403, "forbidden", e.message);
        case EINVAL: return error(422, "invalid", e.message);
        case ETIMEDOUT: return error(503, "timeout", e.message);
        case ENOTSUP: return error(501, "not_supported", e.message);
        default: return error(500, "internal", e.message);
    }
}

}  // namespace

json to_json(const machine::Description& d) {
    return {{"state", machine::to_string(d.state)},
            {"pid", d.pid},
            {"program", d.program},
            {"argv", d.argv},
            {"mem_bytes", d.mem_bytes},
            {"started_at", d.started_at},
            {"exit_status", d.has_exit_status ? json(d.exit_status) : json(nullptr)},
            {"restored_from", d.restored_from.empty() ? json(nullptr) : json(d.restored_from)}};
}

json to_json(const machine::Metrics& m) {
    return {{"exits", {{"io", m.exits_io}, {"intr", m.exits_intr}, {"other", m.exits_other}}},
            {"syscalls", m.syscalls},
            {"unsupported_syscalls", m.unsupported_syscalls},
            {"vcpu_time_ns", m.vcpu_time_ns},
            {"guest_memory_touched_bytes", m.guest_memory_touched_bytes},
            {"io_bytes", {{"read", m.io_read_bytes}, {"write", m.io_write_bytes}}},
            {"processes", m.processes}};
}

api::Router vm_router(Controllable& vm) {
    api::Router r;
    r.add("GET", "/vm", [&vm](const Request&) {
        Response out;
        out.body = to_json(vm.describe());
        return out;
    });
    r.add("GET", "/vm/metrics", [&vm](const Request&) {
        Response out;
        out.body = to_json(vm.metrics());
        return out;
    });
    auto simple = [&r](const char* path, auto action, const char* state) {
        r.add("PUT", path, [action, state](const Request& req) {
            auto body = req.json_body();
            if (!body) return error(400, "bad_request", body.error().message);
            if (auto bad = reject_unknown(*body, {})) return *bad;
            if (auto res = action(); !res) return from_error(res.error());
            Response out;
            out.body = {{"state", state}};
            return out;
        });
    };
    simple(
        "/vm/pause", [&vm] { return vm.pause(); }, "paused");
    simple(
        "/vm/resume", [&vm] { return vm.resume(); }, "running");
    r.add("PUT", "/vm/shutdown", [&vm](const Request& req) {
        auto body = req.json_body();
        if (!body) return error(400, "bad_request", body.error().message);
        if (auto bad = reject_unknown(*body, {})) return *bad;
        vm.shutdown();
        Response out;
        out.status = 202;
        out.body = {{"state", "stopping"}};
        return out;
    });
    r.add("PUT", "/vm/snapshot", [&vm](const Request& req) {
        auto body = req.json_body();
        if (!body) return error(400, "bad_request", body.error().message);
        if (auto bad = reject_unknown(*body, {"path", "type"})) return *bad;
        if (!body->contains("path") || !(*body)["path"].is_string() || (*body)["path"].get<std::string>().empty())
            return error(400, "bad_request", "'path' (a non-empty string) is required");
        std::string type = "full";
        if (body->contains("type")) {
            if (!(*body)["type"].is_string()) return error(400, "bad_request", "'type' must be \"full\" or \"diff\"");
            type = (*body)["type"].get<std::string>();
            if (type != "full" && type != "diff")
                return error(400, "bad_request", "'type' must be \"full\" or \"diff\"");
        }
        // The directory itself may come with the request (SCM_RIGHTS): the
        // way a jailed VMM writes where it cannot reach by path.
        SnapshotTarget target{(*body)["path"].get<std::string>(), nullptr};
        if (!req.fds.empty()) target.dir = req.fds.front();
        if (req.fds.size() > 1) return error(400, "bad_request", "pass one directory descriptor, not several");
        if (!target.dir)
            if (auto r = snapshot_reachable(snapshot::absolute(target.path)); !r) return from_error(r.error());
        auto info = vm.snapshot(target, type == "diff" ? machine::SnapshotType::kDiff : machine::SnapshotType::kFull);
        if (!info) return from_error(info.error());
        Response out;
        out.body = {{"path", info->path},
                    {"type", type},
                    {"memory_bytes", info->memory_bytes},
                    {"pages", info->pages},
                    {"parent", info->parent.empty() ? json(nullptr) : json(info->parent)}};
        return out;
    });
    return r;
}

}  // namespace vessel::machine
