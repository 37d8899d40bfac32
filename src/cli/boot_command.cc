// `vessel boot`: a Linux kernel on a full machine.
#include <cstdio>
#include <memory>
#include <vector>

#include "api/http.h"
#include "base/size.h"
#include "cli/commands.h"
#include "machine/exit_status.h"
#include "machine/full_vm.h"

namespace vessel::cli {

constexpr int kExitInterrupted = 130;  // 128 + SIGINT, as shells report Ctrl-C

// Shared with `vessel restore` of a full machine (restore_command.cc).
Result<machine::ConsoleSpec> parse_console(const std::string& text) {
    machine::ConsoleSpec console;
    if (text == "stdio") {
        console.kind = machine::ConsoleSpec::Kind::kStdio;
    } else if (text == "pty") {
        console.kind = machine::ConsoleSpec::Kind::kPty;
    } else if (text.starts_with("file:") && text.size() > 5) {
        console.kind = machine::ConsoleSpec::Kind::kFile;
        console.path = text.substr(5);
    } else {
        return fail("--console " + text + ": expected stdio, pty or file:PATH", EINVAL);
    }
    return console;
}

// Serves the control API on `api_socket` (if not empty), runs the machine to
// its end and returns vessel's exit status for how it ended.
int run_full_machine(machine::FullVm& vm, const std::string& api_socket, bool verbose,
                     const machine::JailConfig& jail) {
    if (vm.console_path().size()) std::fprintf(stderr, "vessel: console on %s\n", vm.console_path().c_str());
    auto server = listen_control_api(api_socket, vm);
    if (!server) return die(server.error().message, kExitHostError);
    if (jail.options.enabled) {
        if (auto r = machine::jail_full_vmm(vm, jail); !r) return die(r.error().message, kExitHostError);
        jail_selftest();
    }
    if (*server) (*server)->start();
    // From here on the process only serves its guest: confine it.
    if (seccomp_wanted())
        if (auto r = machine::confine_full_vmm(vm); !r) return die(r.error().message, kExitHostError);
    auto outcome = vm.run();
    if (*server) (*server)->stop();
    if (!outcome) return die(outcome.error().message, kExitHostError);
    using Reason = machine::FullRunOutcome::Reason;
    std::string line = machine::describe(outcome->reason);
    if (!outcome->diagnostic.empty()) line += ": " + outcome->diagnostic;
    switch (outcome->reason) {
        case Reason::kReset:
        case Reason::kPoweredOff:
        case Reason::kHalted:
            if (verbose) std::fprintf(stderr, "vessel: %s\n", line.c_str());
            return 0;
        case Reason::kInterrupted: return die(line, kExitInterrupted);
        case Reason::kTripleFault:
        case Reason::kCrashed: return die("guest stopped: " + line, kExitGuestCrashed);
    }
    return kExitHostError;
}

namespace {

struct BootOptions {
    std::string api_socket;
    std::string kernel, initrd, cmdline, mem = "512M", console = "stdio", entry = "auto", net, vsock_uds;
    bool cmdline_given = false;
    unsigned cpus = 1;
    std::vector<std::string> disks;
    int64_t vsock_cid = -1;
    bool rng = false, verbose = false;
    JailFlags jail;
};

int run(BootOptions& o) {
    machine::FullVmConfig cfg;
    cfg.kernel = o.kernel;
    cfg.initrd = o.initrd;
    if (o.cmdline_given) cfg.cmdline = o.cmdline;
    cfg.cpus = o.cpus;
    auto size = parse_size(o.mem);
    if (!size) return die("--mem: " + size.error().message, kExitHostError);
    cfg.mem_size = *size;

    auto console = parse_console(o.console);
    if (!console) return die(console.error().message, kExitHostError);
    cfg.console = *console;

    if (o.entry == "auto")
        cfg.entry = machine::BootEntry::kAuto;
    else if (o.entry == "pvh")
        cfg.entry = machine::BootEntry::kPvh;
    else if (o.entry == "linux64")
        cfg.entry = machine::BootEntry::kLinux64;
    else
        return die("--boot-entry " + o.entry + ": expected auto, pvh or linux64", kExitHostError);

    cfg.disks = o.disks;
    if (!o.net.empty()) cfg.net = o.net;
    if (o.vsock_cid >= 0) {
        if (o.vsock_cid < 3 || o.vsock_cid > 0xffffffffll)
            return die("--vsock: the guest CID must be between 3 and 4294967295", kExitHostError);
        cfg.vsock_cid = static_cast<uint32_t>(o.vsock_cid);
    }
    cfg.vsock_uds = o.vsock_uds;
    cfg.rng = o.rng;
    cfg.kvm_path = kvm_device();
    auto jail = jail_config(o.jail);
    if (!jail) return die(jail.error().message, kExitHostError);
    if (auto r = enter_jail_namespaces(*jail, {o.api_socket, machine::vsock_socket_path(cfg)}); !r)
        return die(r.error().message, kExitHostError);

    auto vm = machine::FullVm::create(cfg);
    if (!vm) {
        return die(vm.error().message, exit_status_for(vm.error()));
    }
    if (o.verbose) {
        std::fprintf(stderr, "vessel: booting %s\n", (*vm)->boot_summary().c_str());
        std::fprintf(stderr, "vessel: command line: %s\n", (*vm)->kernel_cmdline().c_str());
    }
    return run_full_machine(**vm, o.api_socket, o.verbose, *jail);
}

}  // namespace

Runner add_boot_command(CLI::App& app) {
    auto o = std::make_shared<BootOptions>();
    auto* cmd = app.add_subcommand("boot", "Boot a Linux kernel on a full virtual machine");
    cmd->add_option("--kernel", o->kernel, "Kernel: a vmlinux ELF or a bzImage")->required();
    cmd->add_option("--initrd", o->initrd, "Initial ramdisk (initramfs) loaded next to the kernel");
    cmd->add_option("--cmdline", o->cmdline,
                    std::string("Kernel command line (default: \"") + machine::kDefaultKernelCmdline + "\")")
        ->each([o](const std::string&) { o->cmdline_given = true; });
    cmd->add_option("--cpus", o->cpus, "Number of vCPUs")
        ->capture_default_str()
        ->check(CLI::Range(1u, machine::kMaxFullVmCpus));
    cmd->add_option("--mem", o->mem, "Guest memory size (32M to 3G)")->capture_default_str();
    cmd->add_option("--disk", o->disks, "virtio-blk disk PATH[,ro] (repeatable)")->allow_extra_args(false);
    cmd->add_option("--net", o->net, "virtio-net on a TAP device: tap=NAME[,mac=52:54:00:..]");
    cmd->add_option("--vsock", o->vsock_cid, "virtio-vsock with this guest CID");
    cmd->add_option("--vsock-uds", o->vsock_uds, "Host Unix socket path of the vsock device");
    cmd->add_flag("--rng", o->rng, "virtio-rng entropy device");
    cmd->add_option("--console", o->console, "Serial console: stdio, pty or file:PATH")->capture_default_str();
    cmd->add_option("--boot-entry", o->entry, "Kernel entry: auto, pvh or linux64")->capture_default_str();
    cmd->add_flag("-v,--verbose", o->verbose, "Print the boot layout and why the machine stopped");
    cmd->add_option("--api-sock", o->api_socket, "Serve the VM's control API on this Unix socket (docs/api.md)");
    add_jail_flags(cmd, o->jail);
    return [o, cmd] { return cmd->parsed() ? run(*o) : -1; };
}

}  // namespace vessel::cli
