#include "daemon/vm_spec.h"

#include <grp.h>
#include <pwd.h>

#include <set>

#include "base/size.h"
#include "base/text.h"

namespace vessel::daemon {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxPath = 4096;
constexpr size_t kMaxArgs = 1024;
constexpr size_t kMaxArgBytes = 32 * 1024;

std::unexpected<Error> bad(const std::string& m) { return fail(m, EINVAL); }
std::unexpected<Error> range(const std::string& m) { return fail(m, ERANGE); }

const char* type_name(const json& j) { return j.type_name(); }

Result<> only_fields(const json& obj, const std::set<std::string>& allowed, const std::string& where) {
    for (auto it = obj.begin(); it != obj.end(); ++it)
        if (!allowed.count(it.key())) return bad("unknown field " + where + it.key());
    return {};
}

Result<std::string> string_field(const json& v, const std::string& field, size_t max = kMaxPath) {
    if (!v.is_string()) return bad(field + ": expected a string, got " + type_name(v));
    auto s = v.get<std::string>();
    if (s.size() > max) return range(field + ": longer than " + std::to_string(max) + " bytes");
    if (s.find('\0') != std::string::npos) return range(field + ": contains a NUL byte");
    return s;
}

Result<std::string> path_field(const json& v, const std::string& field) {
    auto s = string_field(v, field);
    if (!s) return s;
    if (s->empty() || s->front() != '/') return range(field + ": must be an absolute path");
    return s;
}

// A size: a number of bytes or a string such as "64M".
Result<uint64_t> size_field(const json& v, const std::string& field) {
    if (v.is_number_unsigned()) return v.get<uint64_t>();
    if (v.is_number_integer()) return range(field + ": must be positive");
    if (v.is_string()) {
        auto s = parse_size(v.get<std::string>());
        if (!s) return range(field + ": " + s.error().message);
        return *s;
    }
    return bad(field + ": expected bytes (integer) or a size string like \"64M\", got " + type_name(v));
}

Result<Limits> parse_limits(const json& v) {
    Limits l;
    if (!v.is_object()) return bad("limits: expected an object, got " + std::string(type_name(v)));
    if (auto r = only_fields(v, {"cpus", "memory", "pids"}, "limits."); !r) return std::unexpected(r.error());
    if (v.contains("cpus")) {
        const auto& c = v["cpus"];
        if (!c.is_number()) return bad("limits.cpus: expected a number, got " + std::string(type_name(c)));
        double d = c.get<double>();
        if (!(d >= 0.01 && d <= 1024)) return range("limits.cpus: must be between 0.01 and 1024");
        l.cpus = d;
    }
    if (v.contains("memory")) {
        auto m = size_field(v["memory"], "limits.memory");
        if (!m) return std::unexpected(m.error());
        if (*m < (4ull << 20) || *m > (1ull << 40)) return range("limits.memory: must be between 4M and 1T");
        l.memory = *m;
    }
    if (v.contains("pids")) {
        const auto& p = v["pids"];
        if (!p.is_number_integer()) return bad("limits.pids: expected an integer, got " + std::string(type_name(p)));
        if (!p.is_number_unsigned() || p.get<uint64_t>() < 8 || p.get<uint64_t>() > 1000000)
            return range("limits.pids: must be between 8 and 1000000");
        l.pids = p.get<uint64_t>();
    }
    return l;
}

Result<> parse_common(const json& body, VmSpec& s) {
    if (body.contains("name")) {
        auto n = string_field(body["name"], "name", 63);
        if (!n) return std::unexpected(n.error());
        if (!valid_name(*n))
            return range("name: 1-63 characters of A-Z a-z 0-9 _ . -, starting with a letter or digit");
        s.name = *n;
    }
    if (body.contains("limits")) {
        auto l = parse_limits(body["limits"]);
        if (!l) return std::unexpected(l.error());
        s.limits = s.requested = *l;
    }
    return {};
}

// Defaults that keep one VM from starving the host: guest RAM plus room for
// the VMM itself, and enough tasks for its threads.
void default_limits(VmSpec& s) {
    if (!s.limits.memory) s.limits.memory = s.mem_bytes + (64ull << 20);
    if (!s.limits.pids) s.limits.pids = 64;
}

}  // namespace

bool valid_name(const std::string& name) {
    if (name.empty() || name.size() > 63 || !std::isalnum(static_cast<unsigned char>(name[0]))) return false;
    for (char c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.' && c != '-') return false;
    return true;
}

Result<VmSpec> parse_create(const json& body) {
    if (!body.is_object()) return bad("request body must be a JSON object");
    if (auto r = only_fields(
            body,
            {"name", "program", "args", "mem", "root", "rw", "env", "trace_syscalls", "workdir", "user", "limits"}, "");
        !r)
        return std::unexpected(r.error());
    VmSpec s;
    if (!body.contains("program")) return bad("program: required");
    auto prog = string_field(body["program"], "program");
    if (!prog) return std::unexpected(prog.error());
    if (prog->empty() || prog->front() == '-') return range("program: must be a path (not empty, not starting with -)");
    s.program = *prog;
    if (body.contains("args")) {
        const auto& a = body["args"];
        if (!a.is_array()) return bad("args: expected an array of strings, got " + std::string(type_name(a)));
        if (a.size() > kMaxArgs) return range("args: more than " + std::to_string(kMaxArgs) + " arguments");
        size_t total = 0;
        for (size_t i = 0; i < a.size(); ++i) {
            auto v = string_field(a[i], "args[" + std::to_string(i) + "]", kMaxArgBytes);
            if (!v) return std::unexpected(v.error());
            total += v->size() + 1;
            s.args.push_back(*v);
        }
        if (total > kMaxArgBytes) return range("args: more than " + std::to_string(kMaxArgBytes) + " bytes in all");
    }
    if (body.contains("mem")) {
        auto m = size_field(body["mem"], "mem");
        if (!m) return std::unexpected(m.error());
        if (*m < (1ull << 20) || *m > (64ull << 30)) return range("mem: must be between 1M and 64G");
        s.mem_bytes = *m;
    }
    if (body.contains("root")) {
        auto r = path_field(body["root"], "root");
        if (!r) return std::unexpected(r.error());
        s.root = *r;
    }
    if (body.contains("rw")) {
        const auto& rw = body["rw"];
        if (!rw.is_array()) return bad("rw: expected an array of {\"host\",\"guest\"} objects");
        if (rw.size() > 64) return range("rw: at most 64 mounts");
        for (size_t i = 0; i < rw.size(); ++i) {
            std::string where = "rw[" + std::to_string(i) + "]";
            if (!rw[i].is_object()) return bad(where + ": expected an object, got " + std::string(type_name(rw[i])));
            if (auto r = only_fields(rw[i], {"host", "guest"}, where + "."); !r) return std::unexpected(r.error());
            if (!rw[i].contains("host") || !rw[i].contains("guest"))
                return bad(where + ": host and guest are required");
            auto h = path_field(rw[i]["host"], where + ".host");
            if (!h) return std::unexpected(h.error());
            auto g = path_field(rw[i]["guest"], where + ".guest");
            if (!g) return std::unexpected(g.error());
            if (h->find(':') != std::string::npos) return range(where + ".host: must not contain ':'");
            s.rw.push_back({*h, *g});
        }
    }
    if (body.contains("env")) {
        const auto& env = body["env"];
        if (!env.is_object()) return bad("env: expected an object of strings, got " + std::string(type_name(env)));
        if (env.size() > 256) return range("env: at most 256 variables");
        for (auto it = env.begin(); it != env.end(); ++it) {
            const std::string& k = it.key();
            if (k.empty() || k.size() > 256 || k.find('=') != std::string::npos || k.find('\0') != std::string::npos)
                return range("env: invalid variable name \"" + k.substr(0, 64) + "\"");
            auto v = string_field(it.value(), "env." + k, kMaxArgBytes);
            if (!v) return std::unexpected(v.error());
            s.env.emplace_back(k, *v);
        }
    }
    if (body.contains("trace_syscalls")) {
        if (!body["trace_syscalls"].is_boolean()) return bad("trace_syscalls: expected a boolean");
        s.trace_syscalls = body["trace_syscalls"].get<bool>();
    }
    if (body.contains("workdir")) {
        auto w = string_field(body["workdir"], "workdir", 4096);
        if (!w) return std::unexpected(w.error());
        if (w->empty() || w->front() != '/' || w->find('\0') != std::string::npos)
            return range("workdir: must be an absolute path the guest sees");
        s.workdir = *w;
    }
    if (body.contains("user")) {
        auto u = string_field(body["user"], "user", 32);
        if (!u) return std::unexpected(u.error());
        if (!parse_id_pair(*u)) return range("user: expected \"UID[:GID]\", numbers");
        s.user = *u;
    }
    if (auto r = parse_common(body, s); !r) return std::unexpected(r.error());
    default_limits(s);
    return s;
}

Result<VmSpec> parse_restore(const json& body) {
    if (!body.is_object()) return bad("request body must be a JSON object");
    if (auto r = only_fields(body, {"path", "name", "limits"}, ""); !r) return std::unexpected(r.error());
    if (!body.contains("path")) return bad("path: required");
    VmSpec s;
    auto p = path_field(body["path"], "path");
    if (!p) return std::unexpected(p.error());
    s.restore_from = *p;
    if (auto r = parse_common(body, s); !r) return std::unexpected(r.error());
    default_limits(s);
    return s;
}

json VmSpec::to_json() const {
    json j = {{"program", program}, {"args", args}, {"mem_bytes", mem_bytes}, {"trace_syscalls", trace_syscalls}};
    if (!root.empty()) j["root"] = root;
    if (!workdir.empty()) j["workdir"] = workdir;
    if (!user.empty()) j["user"] = user;
    json rwj = json::array();
    for (const auto& m : rw) rwj.push_back({{"host", m.host}, {"guest", m.guest}});
    j["rw"] = rwj;
    json envj = json::object();
    for (const auto& [k, v] : env) envj[k] = v;
    j["env"] = envj;
    json lim = json::object();
    lim["cpus"] = limits.cpus ? json(*limits.cpus) : json(nullptr);
    lim["memory"] = limits.memory ? json(*limits.memory) : json(nullptr);
    lim["pids"] = limits.pids ? json(*limits.pids) : json(nullptr);
    j["limits"] = lim;
    if (!restore_from.empty()) j["restore_from"] = restore_from;
    return j;
}

VmSpec spec_from_json(const json& j) {
    VmSpec s;
    if (!j.is_object()) return s;
    s.program = j.value("program", "");
    if (j.contains("args") && j["args"].is_array())
        for (const auto& a : j["args"])
            if (a.is_string()) s.args.push_back(a.get<std::string>());
    s.mem_bytes = j.value("mem_bytes", s.mem_bytes);
    s.root = j.value("root", "");
    s.trace_syscalls = j.value("trace_syscalls", false);
    s.workdir = j.value("workdir", "");
    s.user = j.value("user", "");
    if (j.contains("rw") && j["rw"].is_array())
        for (const auto& m : j["rw"]) s.rw.push_back({m.value("host", ""), m.value("guest", "")});
    if (j.contains("env") && j["env"].is_object())
        for (auto it = j["env"].begin(); it != j["env"].end(); ++it)
            if (it.value().is_string()) s.env.emplace_back(it.key(), it.value().get<std::string>());
    if (j.contains("limits") && j["limits"].is_object()) {
        const auto& l = j["limits"];
        if (l.contains("cpus") && l["cpus"].is_number()) s.limits.cpus = l["cpus"].get<double>();
        if (l.contains("memory") && l["memory"].is_number_unsigned()) s.limits.memory = l["memory"].get<uint64_t>();
        if (l.contains("pids") && l["pids"].is_number_unsigned()) s.limits.pids = l["pids"].get<uint64_t>();
    }
    s.restore_from = j.value("restore_from", "");
    return s;
}

std::vector<std::string> vmm_arguments(const VmSpec& s, const std::string& api_socket, const std::string& env_file,
                                       const std::optional<std::string>& jail, const std::optional<VmmUser>& user) {
    std::vector<std::string> a = {s.restore_from.empty() ? "run" : "restore"};
    if (!s.restore_from.empty()) a.push_back(s.restore_from);
    if (!api_socket.empty()) a.insert(a.end(), {"--api-sock", api_socket});
    if (jail && jail->empty()) a.push_back("--no-jail");
    if (jail && !jail->empty()) a.insert(a.end(), {"--snapshot-dir", *jail});
    if (jail && !jail->empty() && user)
        a.insert(a.end(), {"--uid", std::to_string(user->uid), "--gid", std::to_string(user->gid)});
    if (!s.restore_from.empty()) return a;
    a.insert(a.end(), {"--mem", std::to_string(s.mem_bytes)});
    if (!s.root.empty()) a.insert(a.end(), {"--root", s.root});
    for (const auto& m : s.rw) a.insert(a.end(), {"--rw", m.host + ":" + m.guest});
    if (!env_file.empty()) a.insert(a.end(), {"--env-file", env_file});
    if (s.trace_syscalls) a.push_back("--trace-syscalls");
    if (!s.workdir.empty()) a.insert(a.end(), {"--workdir", s.workdir});
    if (!s.user.empty()) a.insert(a.end(), {"--user", s.user});
    a.push_back(s.program);
    a.insert(a.end(), s.args.begin(), s.args.end());
    return a;
}

Result<VmmUser> parse_vmm_user(const std::string& text) {
    const auto colon = text.find(':');
    const std::string user = text.substr(0, colon);
    const std::optional<std::string> group_name =
        colon == std::string::npos ? std::nullopt : std::optional(text.substr(colon + 1));
    std::vector<char> buf(16384);
    VmmUser out{};
    passwd pw;
    passwd* found_user = nullptr;
    if (auto n = parse_id(user)) {
        out.uid = *n;
        out.gid = *n;
        if (::getpwuid_r(*n, &pw, buf.data(), buf.size(), &found_user) == 0 && found_user) out.gid = pw.pw_gid;
    } else if (::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found_user) == 0 && found_user) {
        out.uid = pw.pw_uid;
        out.gid = pw.pw_gid;
    } else {
        return fail("--vmm-user " + text + ": no such user", EINVAL);
    }
    if (out.uid == 0) return fail("--vmm-user " + text + ": root is what the jail's VMM is by default", EINVAL);
    if (group_name) {
        group gr;
        group* found_group = nullptr;
        if (auto n = parse_id(*group_name)) {
            out.gid = *n;
        } else if (::getgrnam_r(group_name->c_str(), &gr, buf.data(), buf.size(), &found_group) == 0 && found_group) {
            out.gid = gr.gr_gid;
        } else {
            return fail("--vmm-user " + text + ": no such group", EINVAL);
        }
    }
    return out;
}

}  // namespace vessel::daemon
