// The `vessel` command.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/size.h"
#include "vmm/exit_status.h"
#include "vmm/thin_vm.h"

namespace {

using vessel::kExitCannotExecute;
using vessel::kExitGuestCrashed;
using vessel::kExitHostError;
using vessel::kExitNotFound;

int die(const std::string& message, int status) {
    std::fprintf(stderr, "vessel: %s\n", message.c_str());
    return status;
}

int cmd_run(const std::string& mem, const std::string& root, const std::vector<std::string>& rw,
            const std::vector<std::string>& env, bool trace, std::vector<std::string> command) {
    vessel::vmm::ThinVmConfig cfg;
    auto size = vessel::parse_size(mem);
    if (!size) return die("--mem: " + size.error().message, kExitHostError);
    if (*size < (1u << 20)) return die("--mem: at least 1M is needed", kExitHostError);
    cfg.mem_size = *size;
    cfg.root = root;
    for (const auto& spec : rw) {
        auto colon = spec.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size())
            return die("--rw " + spec + ": expected HOSTDIR:GUESTPATH", kExitHostError);
        cfg.rw.push_back({spec.substr(0, colon), spec.substr(colon + 1)});
    }
    cfg.envp = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"};
    if (const char* term = std::getenv("TERM")) cfg.envp.push_back(std::string("TERM=") + term);
    for (const auto& e : env) {
        auto eq = e.find('=');
        if (eq == std::string::npos || eq == 0) return die("--env " + e + ": expected KEY=VALUE", kExitHostError);
        std::string key = e.substr(0, eq + 1);
        std::erase_if(cfg.envp, [&](const std::string& s) { return s.starts_with(key); });
        cfg.envp.push_back(e);
    }
    cfg.trace_syscalls = trace;
    cfg.program = command.front();
    cfg.argv = std::move(command);

    auto vm = vessel::vmm::ThinVm::create(cfg);
    if (!vm) {
        int e = vm.error().sys_errno;
        int status = e == ENOENT ? kExitNotFound : e == ENOEXEC ? kExitCannotExecute : kExitHostError;
        return die(vm.error().message, status);
    }
    auto outcome = (*vm)->run();
    if (!outcome) return die(outcome.error().message, kExitHostError);
    if (!outcome->diagnostic.empty()) std::fprintf(stderr, "vessel: %s\n", outcome->diagnostic.c_str());
    return outcome->status;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Vessel: run programs in thin microVMs on KVM"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "vessel 0.1.0");

    std::string mem = "64M", root;
    std::vector<std::string> rw, env, command;
    bool trace = false;
    auto* run = app.add_subcommand("run", "Run a static x86-64 Linux program in a thin microVM");
    run->add_option("--mem", mem, "Guest memory size (e.g. 64M, 1G)")->capture_default_str();
    run->add_option("--root", root, "Host directory the guest sees as / (read-only; default: empty)");
    run->add_option("--rw", rw, "Writable host directory HOSTDIR:GUESTPATH (repeatable)");
    run->add_option("--env", env, "Environment variable KEY=VALUE (repeatable)");
    run->add_flag("--trace-syscalls", trace, "Print every system call to stderr, strace-style");
    run->add_option("command", command, "PROGRAM [ARGS...]")->required();
    // Everything after PROGRAM belongs to the program, dashes included.
    run->positionals_at_end();
    run->prefix_command();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int r = app.exit(e);
        return r == 0 ? 0 : kExitHostError;
    }
    if (run->parsed()) {
        for (const auto& extra : run->remaining()) command.push_back(extra);
        return cmd_run(mem, root, rw, env, trace, command);
    }
    return kExitHostError;
}
