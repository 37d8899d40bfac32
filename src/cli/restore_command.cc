// `vessel restore DIR`: resume a VM from a snapshot directory, a thin VM
// (written by `vessel run`) or a full machine (`vessel boot`) as its
// state.bin says.
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/daemon_client.h"
#include "machine/exit_status.h"
#include "machine/full_vm.h"
#include "machine/snapshot.h"
#include "machine/thin_vm.h"

namespace vessel::cli {
namespace {

struct RestoreOptions {
    std::string dir, api_socket, name, daemon_socket, console = "stdio";
    bool console_given = false, detach = false, verbose = false;
    JailFlags jail;
};

int restore_full(const RestoreOptions& o, const machine::JailConfig& jail) {
    auto console = parse_console(o.console);
    if (!console) return die(console.error().message, kExitHostError);
    auto vm = machine::FullVm::restore(o.dir, *console, kvm_device());
    if (!vm) return die("restore: " + vm.error().message, kExitHostError);
    if (o.verbose) std::fprintf(stderr, "vessel: %s\n", (*vm)->boot_summary().c_str());
    return run_full_machine(**vm, o.api_socket, o.verbose, jail);
}

int restore(const RestoreOptions& o) {
    if (o.detach) {
        if (!o.api_socket.empty()) return die("--api-sock cannot be used with -d (vesseld chooses it)", kExitHostError);
        return restore_detached(o.dir, o.name, o.daemon_socket);
    }
    auto kind = machine::snapshot_kind(o.dir);
    if (!kind) return die("restore: " + kind.error().message, kExitHostError);
    auto jail = jail_config(o.jail);
    if (!jail) return die(jail.error().message, kExitHostError);
    // A restored full machine's vsock socket is in its state; the jail's
    // parent removes the API socket only (the device replaces a stale one).
    if (auto r = enter_jail_namespaces(*jail, {o.api_socket}); !r) return die(r.error().message, kExitHostError);
    if (*kind == machine::MachineKind::kFull) return restore_full(o, *jail);
    if (o.console_given)
        return die(
            "restore: --console applies to full machines; " + o.dir + " is a thin VM (its stdio is this vessel's)",
            kExitHostError);
    auto vm = machine::ThinVm::restore(o.dir, kvm_device());
    if (!vm) return die("restore: " + vm.error().message, kExitHostError);
    serve_thin_vm(std::move(*vm), o.api_socket, *jail);
}

}  // namespace

Runner add_restore_command(CLI::App& app) {
    auto o = std::make_shared<RestoreOptions>();
    auto* cmd = app.add_subcommand("restore", "Resume a thin VM or a full machine from a snapshot directory");
    cmd->add_option("dir", o->dir, "Snapshot directory (from PUT /vm/snapshot or `vessel snapshot`)")->required();
    cmd->add_option("--api-sock", o->api_socket, "Serve the VM's control API on this Unix socket");
    cmd->add_option("--console", o->console, "Full machines: serial console, stdio, pty or file:PATH")
        ->capture_default_str()
        ->each([o](const std::string&) { o->console_given = true; });
    cmd->add_flag("-v,--verbose", o->verbose, "Full machines: print what was restored and why the machine stopped");
    add_jail_flags(cmd, o->jail);
    cmd->add_flag("-d,--detach", o->detach, "Restore under vesseld and return the new VM's id");
    cmd->add_option("--name", o->name, "With -d: a name for the VM");
    cmd->add_option("--host-socket", o->daemon_socket, "With -d: vesseld's socket");
    return [o, cmd] { return cmd->parsed() ? restore(*o) : -1; };
}

}  // namespace vessel::cli
