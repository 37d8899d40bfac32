// The daemon's router (docs/api.md) and the request helpers its resources share.
#include "daemon/daemon_impl.h"

#include <thread>

namespace vessel::daemon {

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

// api::call to a VMM's socket. A VMM creates its socket (bind) a moment
// before it listens, and POST /vms answers on the first: a refused
// connection is tried again for up to 100 ms.
Result<Response> call_vmm(const std::string& socket, const std::string& method, const std::string& target,
                          const json* body, std::chrono::milliseconds timeout, int pass_fd) {
    for (int attempt = 0;; ++attempt) {
        auto r = api::call(socket, method, target, body, timeout, pass_fd);
        if (r || r.error().sys_errno != ECONNREFUSED || attempt == 20) return r;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
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

}  // namespace vessel::daemon
