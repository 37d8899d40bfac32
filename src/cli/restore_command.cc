// `vessel restore DIR`: resume a VM from a snapshot directory.
#include <memory>

#include "cli/commands.h"
#include "cli/daemon_client.h"
#include "vmm/exit_status.h"
#include "vmm/thin_vm.h"

namespace vessel::cli {
namespace {

struct RestoreOptions {
    std::string dir, api_socket, name, daemon_socket;
    bool detach = false;
};

int restore(const RestoreOptions& o) {
    if (o.detach) {
        if (!o.api_socket.empty()) return die("--api-sock cannot be used with -d (vesseld chooses it)", kExitHostError);
        return restore_detached(o.dir, o.name, o.daemon_socket);
    }
    auto vm = vmm::ThinVm::restore(o.dir, kvm_device());
    if (!vm) return die("restore: " + vm.error().message, kExitHostError);
    serve_thin_vm(std::move(*vm), o.api_socket);
}

}  // namespace

Runner add_restore_command(CLI::App& app) {
    auto o = std::make_shared<RestoreOptions>();
    auto* cmd = app.add_subcommand("restore", "Resume a thin VM from a snapshot directory");
    cmd->add_option("dir", o->dir, "Snapshot directory (from PUT /vm/snapshot or `vessel snapshot`)")->required();
    cmd->add_option("--api-sock", o->api_socket, "Serve the VM's control API on this Unix socket");
    cmd->add_flag("-d,--detach", o->detach, "Restore under vesseld and return the new VM's id");
    cmd->add_option("--name", o->name, "With -d: a name for the VM");
    cmd->add_option("--host-socket", o->daemon_socket, "With -d: vesseld's socket");
    return [o, cmd] { return cmd->parsed() ? restore(*o) : -1; };
}

}  // namespace vessel::cli
