// The `vessel` verbs that manage VMs through vesseld: ps, inspect, pause,
// resume, snapshot, stop, kill, rm, logs, stats. (`run -d` and `restore -d`
// live with run and restore and use daemon_client.h.)
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "cli/daemon_client.h"

namespace vessel::cli {
namespace {

using json = nlohmann::json;

std::string encode(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.')
            out += static_cast<char>(c);
        else {
            char buf[4];
            std::snprintf(buf, sizeof buf, "%%%02X", c);
            out += buf;
        }
    }
    return out;
}

std::string human_bytes(double b) {
    const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) b /= 1024, ++u;
    char buf[32];
    std::snprintf(buf, sizeof buf, u ? "%.1f%s" : "%.0f%s", b, units[u]);
    return buf;
}

std::string str(const json& j, const char* key) {
    if (!j.contains(key) || j[key].is_null()) return "-";
    return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

struct Common {
    std::string host_socket;
    std::string socket() const { return daemon_socket(host_socket); }
};

CLI::App* verb(CLI::App& app, const char* name, const char* help, Common& c) {
    auto* cmd = app.add_subcommand(name, help);
    cmd->add_option("--host-socket", c.host_socket,
                    "vesseld's socket (default: $VESSEL_DAEMON_SOCKET or /run/vessel/vesseld.sock)");
    cmd->group("Managing VMs with vesseld");
    return cmd;
}

// Runs `op` on every VM named on the command line; the status is the worst.
int for_each(const std::vector<std::string>& refs, const std::function<int(const std::string&)>& op) {
    int worst = 0;
    for (const auto& r : refs) worst = std::max(worst, op(r));
    return worst;
}

int ps(const Common& c, bool all, bool quiet, bool as_json) {
    int status;
    auto r = daemon_request(c.socket(), "GET", "/vms", nullptr, status);
    if (!r) return status;
    json vms = json::array();
    for (const auto& vm : r->body["vms"]) {
        std::string s = vm.value("state", "");
        if (all || s == "running" || s == "paused" || s == "lost" || s == "creating" || s == "orphaned")
            vms.push_back(vm);
    }
    if (as_json) {
        std::printf("%s\n", vms.dump(2).c_str());
        return 0;
    }
    if (quiet) {
        for (const auto& vm : vms) std::printf("%s\n", vm.value("id", "").c_str());
        return 0;
    }
    std::printf("%-12s  %-20s  %-8s  %-7s  %-8s  %-24s  %s\n", "ID", "NAME", "STATE", "PID", "EXIT", "CREATED",
                "COMMAND");
    for (const auto& vm : vms) {
        std::string cmd = vm.value("program", "");
        for (const auto& a : vm["args"]) cmd += " " + a.get<std::string>();
        if (vm.contains("restored_from") && vm["restored_from"].is_string())
            cmd = "(restored from " + vm["restored_from"].get<std::string>() + ")";
        if (cmd.size() > 40) cmd = cmd.substr(0, 37) + "...";
        // Which limit ended it, as docker's OOMKilled: "137 oom", "1 pids".
        std::string exit = str(vm, "exit_status");
        if (vm.value("oom_killed", false))
            exit += " oom";
        else if (vm.value("pids_limit_reached", false))
            exit += " pids";
        std::printf("%-12s  %-20s  %-8s  %-7s  %-8s  %-24s  %s\n", vm.value("id", "").c_str(),
                    vm.value("name", "").c_str(), vm.value("state", "").c_str(), str(vm, "pid").c_str(), exit.c_str(),
                    vm.value("created_at", "").c_str(), cmd.c_str());
    }
    return 0;
}

int simple_put(const Common& c, const std::string& ref, const std::string& action, const json* body) {
    int status;
    auto r =
        daemon_request(c.socket(), "PUT", "/vms/" + encode(ref) + "/" + action, body, status, std::chrono::minutes(11));
    if (!r) return status;
    std::printf("%s\n", r->body.value("id", ref).c_str());
    return 0;
}

int logs(const Common& c, const std::string& ref, bool follow, int tail) {
    int status;
    std::string base = "/vms/" + encode(ref);
    uint64_t offset = 0;
    if (tail >= 0) {
        // Follow from the file's end as of now (output racing this call may
        // be shown twice, never lost).
        auto info = daemon_request(c.socket(), "GET", base, nullptr, status);
        if (!info) return status;
        offset = info->body.value("console_bytes", uint64_t{0});
        auto r = daemon_request(c.socket(), "GET", base + "/logs?tail=" + std::to_string(tail), nullptr, status);
        if (!r) return status;
        std::fwrite(r->raw.data(), 1, r->raw.size(), stdout);
        std::fflush(stdout);
        if (!follow) return 0;
    }
    for (;;) {
        bool got = false;
        for (;;) {
            auto r =
                daemon_request(c.socket(), "GET", base + "/logs?offset=" + std::to_string(offset), nullptr, status);
            if (!r) return status;
            if (r->raw.empty()) break;
            std::fwrite(r->raw.data(), 1, r->raw.size(), stdout);
            offset += r->raw.size();
            got = true;
        }
        std::fflush(stdout);
        if (!follow) return 0;
        if (!got) {
            auto info = daemon_request(c.socket(), "GET", base, nullptr, status);
            if (!info) return status;
            std::string s = info->body.value("state", "");
            if (s == "exited") {
                // One last read: output written just before the exit.
                auto r =
                    daemon_request(c.socket(), "GET", base + "/logs?offset=" + std::to_string(offset), nullptr, status);
                if (r) std::fwrite(r->raw.data(), 1, r->raw.size(), stdout);
                std::fflush(stdout);
                return 0;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(250));
        }
    }
}

struct Sample {
    json stats;
    double t = 0;
};

int stats(const Common& c, std::vector<std::string> refs, bool no_stream) {
    int status;
    bool tty = ::isatty(1) == 1;
    std::map<std::string, Sample> prev;
    for (int round = 0;; ++round) {
        std::vector<std::string> ids = refs;
        if (refs.empty()) {
            auto r = daemon_request(c.socket(), "GET", "/vms", nullptr, status);
            if (!r) return status;
            for (const auto& vm : r->body["vms"])
                if (vm.value("state", "") == "running" || vm.value("state", "") == "paused")
                    ids.push_back(vm.value("id", ""));
        }
        std::vector<std::pair<std::string, Sample>> now;
        for (const auto& id : ids) {
            auto r = api::call(c.socket(), "GET", "/vms/" + encode(id) + "/stats", nullptr, std::chrono::seconds(5));
            if (!r) {
                return daemon_request(c.socket(), "GET", "/healthz", nullptr, status) ? 1 : status;
            }
            if (r->status != 200) {
                if (!refs.empty()) {
                    daemon_request(c.socket(), "GET", "/vms/" + encode(id) + "/stats", nullptr, status);
                    return status;
                }
                continue;  // removed meanwhile
            }
            Sample s;
            s.stats = r->body;
            s.t = r->body.value("timestamp_ns", 0.0) / 1e9;
            now.emplace_back(r->body.value("id", id), s);
        }
        // The first round only primes CPU figures (they are rates).
        if (round > 0 || now.empty()) {
            if (tty && !no_stream) std::printf("\033[H\033[2J");
            std::printf("%-12s  %-20s  %-7s  %7s  %-21s  %5s  %5s  %-20s  %9s\n", "ID", "NAME", "STATE", "CPU %",
                        "MEM / LIMIT", "PIDS", "PROCS", "EXITS io/intr/other", "SYSCALLS");
            for (const auto& [id, s] : now) {
                const json& j = s.stats;
                std::string cpu = "-";
                if (prev.count(id) && j["cpu_ns"].is_number() && prev[id].stats["cpu_ns"].is_number()) {
                    double dt = s.t - prev[id].t;
                    double dc = (j["cpu_ns"].get<double>() - prev[id].stats["cpu_ns"].get<double>()) / 1e9;
                    char buf[16];
                    std::snprintf(buf, sizeof buf, "%.1f%%", dt > 0 ? 100 * dc / dt : 0.0);
                    cpu = buf;
                }
                std::string mem = j["memory_bytes"].is_number() ? human_bytes(j["memory_bytes"].get<double>()) : "-";
                mem += " / ";
                mem += j["memory_limit"].is_number() ? human_bytes(j["memory_limit"].get<double>()) : "-";
                std::string exits = "-", calls = "-", procs = "-";
                if (j["vmm"].is_object()) {
                    const json& v = j["vmm"];
                    if (v.contains("processes") && v["processes"].is_number_unsigned() && v["processes"] != 0)
                        procs = str(v, "processes");  // a thin VM's guest processes
                    if (v.contains("exits"))
                        exits = str(v["exits"], "io") + "/" + str(v["exits"], "intr") + "/" + str(v["exits"], "other");
                    if (v.contains("syscalls") && v["syscalls"].is_object()) {
                        double total = 0;
                        for (const auto& [k, n] : v["syscalls"].items())
                            if (n.is_number()) total += n.get<double>();
                        calls = std::to_string(static_cast<uint64_t>(total));
                    }
                }
                std::printf("%-12s  %-20s  %-7s  %7s  %-21s  %5s  %5s  %-20s  %9s\n", id.c_str(),
                            j.value("name", "").c_str(), j.value("state", "").c_str(), cpu.c_str(), mem.c_str(),
                            str(j, "pids").c_str(), procs.c_str(), exits.c_str(), calls.c_str());
            }
            std::fflush(stdout);
            if (no_stream) return 0;
        }
        prev.clear();
        for (auto& [id, s] : now) prev[id] = s;
        std::this_thread::sleep_for(round == 0 ? std::chrono::milliseconds(500) : std::chrono::seconds(1));
    }
}

}  // namespace

std::vector<Runner> add_daemon_commands(CLI::App& app) {
    std::vector<Runner> runners;
    auto c = std::make_shared<Common>();

    {
        auto all = std::make_shared<bool>(false), quiet = std::make_shared<bool>(false),
             as_json = std::make_shared<bool>(false);
        auto* cmd = verb(app, "ps", "List VMs managed by vesseld", *c);
        cmd->add_flag("-a,--all", *all, "Include exited VMs");
        cmd->add_flag("-q,--quiet", *quiet, "Print ids only");
        cmd->add_flag("--json", *as_json, "Print the daemon's JSON records");
        runners.push_back([=] { return cmd->parsed() ? ps(*c, *all, *quiet, *as_json) : -1; });
    }
    {
        auto refs = std::make_shared<std::vector<std::string>>();
        auto* cmd = verb(app, "inspect", "Show everything vesseld knows about VMs (JSON)", *c);
        cmd->add_option("VM", *refs, "VM id, id prefix or name")->required();
        runners.push_back([=] {
            if (!cmd->parsed()) return -1;
            json out = json::array();
            int worst = 0, status;
            for (const auto& ref : *refs) {
                auto r = daemon_request(c->socket(), "GET", "/vms/" + encode(ref), nullptr, status);
                if (r) out.push_back(r->body);
                worst = std::max(worst, status);
            }
            if (!out.empty()) std::printf("%s\n", (refs->size() == 1 ? out[0] : out).dump(2).c_str());
            return worst;
        });
    }
    for (const char* action : {"pause", "resume"}) {
        auto refs = std::make_shared<std::vector<std::string>>();
        std::string a = action;
        auto* cmd = verb(app, action, a == "pause" ? "Pause VMs (vCPUs stop; state is kept)" : "Resume paused VMs", *c);
        cmd->add_option("VM", *refs, "VM id, id prefix or name")->required();
        runners.push_back([=] {
            if (!cmd->parsed()) return -1;
            return for_each(*refs, [&](const std::string& r) { return simple_put(*c, r, a, nullptr); });
        });
    }
    {
        auto ref = std::make_shared<std::string>(), path = std::make_shared<std::string>(),
             type = std::make_shared<std::string>("full");
        auto* cmd = verb(app, "snapshot", "Write a paused VM's state to a directory", *c);
        cmd->add_option("VM", *ref, "VM id, id prefix or name")->required();
        cmd->add_option("DIR", *path, "Snapshot directory (absolute, or relative to the current directory)")
            ->required();
        cmd->add_option("--type", *type, "full or diff")->check(CLI::IsMember({"full", "diff"}))->capture_default_str();
        runners.push_back([=] {
            if (!cmd->parsed()) return -1;
            std::string dir = *path;
            if (!dir.empty() && dir.front() != '/') {
                char cwd[4096];
                if (::getcwd(cwd, sizeof cwd)) dir = std::string(cwd) + "/" + dir;
            }
            json body = {{"path", dir}, {"type", *type}};
            int status;
            std::optional<api::Response> r;
            {
                Progress p("snapshot of " + *ref + " to " + dir);
                r = daemon_request(c->socket(), "PUT", "/vms/" + encode(*ref) + "/snapshot", &body, status,
                                   std::chrono::minutes(31));
                p.done(r ? human_bytes(r->body.value("memory_bytes", 0.0)) + " of memory, " + str(r->body, "pages") +
                               " pages"
                         : "failed");
            }
            if (!r) return status;
            std::printf("%s\n", r->body.value("path", dir).c_str());
            return 0;
        });
    }
    {
        auto refs = std::make_shared<std::vector<std::string>>();
        auto timeout = std::make_shared<int>(10);
        auto* cmd = verb(app, "stop", "Shut VMs down (SIGKILL after the timeout)", *c);
        cmd->add_option("VM", *refs, "VM id, id prefix or name")->required();
        cmd->add_option("-t,--time", *timeout, "Seconds to wait before killing")
            ->check(CLI::Range(0, 600))
            ->capture_default_str();
        runners.push_back([=] {
            if (!cmd->parsed()) return -1;
            json body = {{"timeout_s", *timeout}};
            return for_each(*refs, [&](const std::string& r) { return simple_put(*c, r, "stop", &body); });
        });
    }
    {
        auto refs = std::make_shared<std::vector<std::string>>();
        auto sig = std::make_shared<std::string>("KILL");
        auto* cmd = verb(app, "kill", "Send a signal to VMs' VMM processes (default KILL)", *c);
        cmd->add_option("VM", *refs, "VM id, id prefix or name")->required();
        cmd->add_option("-s,--signal", *sig, "KILL, TERM, INT, HUP, QUIT, USR1 or USR2")->capture_default_str();
        runners.push_back([=] {
            if (!cmd->parsed()) return -1;
            json body = {{"signal", *sig}};
            return for_each(*refs, [&](const std::string& r) { return simple_put(*c, r, "kill", &body); });
        });
    }
    {
        auto refs = std::make_shared<std::vector<std::string>>();
        auto force = std::make_shared<bool>(false);
        auto* cmd = verb(app, "rm", "Remove VMs (their record, directory and cgroup)", *c);
        cmd->add_option("VM", *refs, "VM id, id prefix or name")->required();
        cmd->add_flag("-f,--force", *force, "Kill running VMs first");
        runners.push_back([=] {
            if (!cmd->parsed()) return -1;
            return for_each(*refs, [&](const std::string& ref) {
                int status;
                auto r = daemon_request(c->socket(), "DELETE", "/vms/" + encode(ref) + (*force ? "?force=true" : ""),
                                        nullptr, status);
                if (!r) return status;
                std::printf("%s\n", r->body.value("id", ref).c_str());
                return 0;
            });
        });
    }
    {
        auto ref = std::make_shared<std::string>();
        auto follow = std::make_shared<bool>(false);
        auto tail = std::make_shared<int>(-1);
        auto* cmd = verb(app, "logs", "Print a VM's console output", *c);
        cmd->add_option("VM", *ref, "VM id, id prefix or name")->required();
        cmd->add_flag("-f,--follow", *follow, "Keep printing new output until the VM exits");
        cmd->add_option("-n,--tail", *tail, "Only the last N lines")->check(CLI::Range(0, 1000000));
        runners.push_back([=] { return cmd->parsed() ? logs(*c, *ref, *follow, *tail) : -1; });
    }
    {
        auto refs = std::make_shared<std::vector<std::string>>();
        auto no_stream = std::make_shared<bool>(false);
        auto* cmd = verb(app, "stats", "Live CPU, memory and exit counters of running VMs", *c);
        cmd->add_option("VM", *refs, "VM ids or names (default: all running)");
        cmd->add_flag("--no-stream", *no_stream, "Print one table and exit");
        runners.push_back([=] { return cmd->parsed() ? stats(*c, *refs, *no_stream) : -1; });
    }
    return runners;
}

}  // namespace vessel::cli
