// `vessel run`: a static program in a thin microVM.
#include <cstdlib>
#include <memory>
#include <vector>

#include "base/detached_exit.h"
#include "base/size.h"
#include "cli/commands.h"
#include "vmm/exit_status.h"
#include "vmm/thin_vm.h"

namespace vessel::cli {
namespace {

struct RunOptions {
    std::string mem = "64M";
    std::string root;
    std::vector<std::string> rw, env;
    bool trace = false;
};

int run(RunOptions& o, const std::vector<std::string>& remaining) {
    std::vector<std::string> command = remaining;
    if (command.empty()) return die("run: PROGRAM is required", kExitHostError);

    vmm::ThinVmConfig cfg;
    auto size = parse_size(o.mem);
    if (!size) return die("--mem: " + size.error().message, kExitHostError);
    if (*size < (1u << 20)) return die("--mem: at least 1M is needed", kExitHostError);
    if (*size > (64ull << 30)) return die("--mem: at most 64G is supported", kExitHostError);
    cfg.mem_size = *size;
    cfg.root = o.root;
    for (const auto& spec : o.rw) {
        auto colon = spec.find(':');
        if (colon == std::string::npos || colon == 0 || colon + 1 == spec.size())
            return die("--rw " + spec + ": expected HOSTDIR:GUESTPATH", kExitHostError);
        cfg.rw.push_back({spec.substr(0, colon), spec.substr(colon + 1)});
    }
    cfg.envp = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/"};
    if (const char* term = std::getenv("TERM")) cfg.envp.push_back(std::string("TERM=") + term);
    for (const auto& e : o.env) {
        auto eq = e.find('=');
        if (eq == std::string::npos || eq == 0) return die("--env " + e + ": expected KEY=VALUE", kExitHostError);
        std::string key = e.substr(0, eq + 1);
        std::erase_if(cfg.envp, [&](const std::string& s) { return s.starts_with(key); });
        cfg.envp.push_back(e);
    }
    cfg.trace_syscalls = o.trace;
    cfg.kvm_path = kvm_device();
    cfg.program = command.front();
    cfg.argv = std::move(command);

    auto vm = vmm::ThinVm::create(cfg);
    if (!vm) {
        int e = vm.error().sys_errno;
        int status = e == ENOENT ? kExitNotFound : e == ENOEXEC ? kExitCannotExecute : kExitHostError;
        return die(vm.error().message, status);
    }
    auto outcome = (*vm)->run();
    if (!outcome) return die(outcome.error().message, kExitHostError);
    if (!outcome->diagnostic.empty()) die(outcome->diagnostic, 0);
    // The status is known: report it now and let a helper destroy the VM
    // (about a millisecond of KVM and memory teardown) after we are gone.
    vm->release();
    exit_with_detached_teardown(outcome->status);
}

}  // namespace

Runner add_run_command(CLI::App& app) {
    auto o = std::make_shared<RunOptions>();
    auto* cmd = app.add_subcommand("run", "Run a static x86-64 Linux program in a thin microVM");
    cmd->add_option("--mem", o->mem, "Guest memory size (e.g. 64M, 1G)")->capture_default_str();
    cmd->add_option("--root", o->root, "Host directory the guest sees as / (read-only; default: empty)");
    cmd->add_option("--rw", o->rw, "Writable host directory HOSTDIR:GUESTPATH (repeatable)")
        ->allow_extra_args(false);
    cmd->add_option("--env", o->env, "Environment variable KEY=VALUE (repeatable)")->allow_extra_args(false);
    cmd->add_flag("--trace-syscalls", o->trace, "Print every system call to stderr, strace-style");
    // Everything from PROGRAM on belongs to the program, dashes included, so
    // PROGRAM is not a CLI11 positional (those would take options apart).
    cmd->prefix_command();
    cmd->footer("PROGRAM [ARGS...] follow the options; everything after PROGRAM is passed to it unchanged.");
    return [o, cmd] { return cmd->parsed() ? run(*o, cmd->remaining()) : -1; };
}

}  // namespace vessel::cli
