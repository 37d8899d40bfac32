// `vessel run`: a Linux program in a thin microVM.
#include <cstdlib>
#include <memory>
#include <vector>

#include "base/env_file.h"
#include "base/size.h"
#include "base/text.h"
#include "cli/commands.h"
#include "cli/daemon_client.h"
#include "machine/exit_status.h"
#include "machine/thin_vm.h"

namespace vessel::cli {
namespace {

struct RunOptions {
    std::string mem = "64M";
    std::string root;
    std::vector<std::string> rw, env;
    std::string env_file;
    std::string workdir, user;
    uint32_t pids = machine::kDefaultThinVmProcesses;
    bool trace = false;
    std::string api_socket;
    bool detach = false;
    std::string name, daemon_socket;
    JailFlags jail;
};

// `vessel run -d`: the same VM, created by vesseld instead of this process.
int run_through_daemon(const RunOptions& o, const std::vector<std::string>& command) {
    nlohmann::json spec = {{"program", command.front()},
                           {"args", std::vector<std::string>(command.begin() + 1, command.end())},
                           {"mem", o.mem},
                           {"rw", o.rw}};
    if (!o.root.empty()) spec["root"] = o.root;
    if (!o.name.empty()) spec["name"] = o.name;
    if (!o.workdir.empty()) spec["workdir"] = o.workdir;
    if (!o.user.empty()) spec["user"] = o.user;
    nlohmann::json env = nlohmann::json::object();
    for (const auto& e : o.env) {
        auto eq = e.find('=');
        if (eq == std::string::npos || eq == 0) return die("--env " + e + ": expected KEY=VALUE", kExitHostError);
        env[e.substr(0, eq)] = e.substr(eq + 1);
    }
    if (!env.empty()) spec["env"] = env;
    return run_detached(spec, o.daemon_socket);
}

int run(RunOptions& o, const std::vector<std::string>& remaining) {
    std::vector<std::string> command = remaining;
    if (command.empty()) return die("run: PROGRAM is required", kExitHostError);
    if (o.detach) {
        if (!o.api_socket.empty()) return die("--api-sock cannot be used with -d (vesseld chooses it)", kExitHostError);
        if (o.pids != machine::kDefaultThinVmProcesses)
            return die("--pids cannot be used with -d: give the VM a pids limit in its spec (limits.pids)",
                       kExitHostError);
        return run_through_daemon(o, command);
    }

    machine::ThinVmConfig cfg;
    auto size = parse_size(o.mem);
    if (!size) return die("--mem: " + size.error().message, kExitHostError);
    cfg.mem_size = *size;  // its range is ThinVm::create's to check
    cfg.root = o.root;
    for (const auto& spec : o.rw) {
        auto colon = spec.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size())
            return die("--rw " + spec + ": expected HOSTDIR:GUESTPATH", kExitHostError);
        cfg.rw.push_back({spec.substr(0, colon), spec.substr(colon + 1)});
    }
    cfg.envp = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"};
    if (const char* term = std::getenv("TERM")) cfg.envp.push_back(std::string("TERM=") + term);
    std::vector<std::string> env;  // the file's entries first: --env flags override them
    if (!o.env_file.empty()) {
        auto from_file = read_env_file(o.env_file);
        if (!from_file) return die("--env-file " + from_file.error().message, kExitHostError);
        env = std::move(*from_file);
    }
    for (const auto& e : o.env) {
        auto eq = e.find('=');
        if (eq == std::string::npos || eq == 0) return die("--env " + e + ": expected KEY=VALUE", kExitHostError);
        env.push_back(e);
    }
    for (const auto& e : env) {
        std::string key = e.substr(0, e.find('=') + 1);
        std::erase_if(cfg.envp, [&](const std::string& s) { return s.starts_with(key); });
        cfg.envp.push_back(e);
    }
    cfg.trace_syscalls = o.trace;
    cfg.workdir = o.workdir;
    cfg.max_processes = o.pids;
    if (!o.user.empty()) {
        // Numbers: the guest's own /etc/passwd, not the host's, gives names
        // their meaning.
        auto ids = parse_id_pair(o.user);
        if (!ids) return die("--user " + o.user + ": expected UID[:GID], numbers", kExitHostError);
        cfg.uid = ids->first;
        cfg.gid = ids->second;
    }
    cfg.kvm_path = kvm_device();
    cfg.program = command.front();
    cfg.argv = std::move(command);
    auto jail = jail_config(o.jail);
    if (!jail) return die(jail.error().message, kExitHostError);
    if (auto r = enter_jail_namespaces(*jail, {o.api_socket}); !r) return die(r.error().message, kExitHostError);

    auto vm = machine::ThinVm::create(cfg);
    if (!vm) {
        return die(vm.error().message, exit_status_for(vm.error()));
    }
    serve_thin_vm(std::move(*vm), o.api_socket, *jail);
}

}  // namespace

Runner add_run_command(CLI::App& app) {
    auto o = std::make_shared<RunOptions>();
    auto* cmd = app.add_subcommand("run", "Run an x86-64 Linux program (static or dynamic) in a thin microVM");
    cmd->add_option("--mem", o->mem, "Guest memory size (e.g. 64M, 1G)")->capture_default_str();
    cmd->add_option("--root", o->root, "Host directory the guest sees as / (read-only; default: empty)");
    cmd->add_option("--rw", o->rw, "Writable host directory HOSTDIR:GUESTPATH (repeatable)")->allow_extra_args(false);
    cmd->add_option("--env", o->env, "Environment variable KEY=VALUE (repeatable)")->allow_extra_args(false);
    cmd->add_option("--env-file", o->env_file,
                    "Environment variables from FILE: KEY=VALUE lines, or NUL-separated entries (--env overrides)");
    cmd->add_option("--workdir", o->workdir, "The guest's working directory, a path it sees (default: /)");
    cmd->add_option("--pids", o->pids, "Guest processes alive at once, pid 1 included (a fork past it: EAGAIN)")
        ->capture_default_str();
    cmd->add_option("--user", o->user, "The guest's UID[:GID], numbers (default: the caller's; GID: the UID)");
    cmd->add_flag("--trace-syscalls", o->trace, "Print every system call to stderr, strace-style");
    cmd->add_option("--api-sock", o->api_socket, "Serve the VM's control API on this Unix socket");
    add_jail_flags(cmd, o->jail);
    cmd->add_flag("-d,--detach", o->detach, "Create the VM through vesseld and return its id");
    cmd->add_option("--name", o->name, "With -d: a name for the VM");
    cmd->add_option("--host-socket", o->daemon_socket,
                    "With -d: vesseld's socket (default $VESSEL_DAEMON_SOCKET or /run/vessel/vesseld.sock)");
    // Everything from PROGRAM on belongs to the program, dashes included, so
    // PROGRAM is not a CLI11 positional (those would take options apart).
    cmd->prefix_command();
    cmd->footer("PROGRAM [ARGS...] follow the options; everything after PROGRAM is passed to it unchanged.");
    return [o, cmd] { return cmd->parsed() ? run(*o, cmd->remaining()) : -1; };
}

}  // namespace vessel::cli
