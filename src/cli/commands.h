// Each `vessel` subcommand registers itself on the app and returns a
// callback that runs it once the command line has been parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "machine/confine.h"

namespace vessel::devices {
struct ConsoleSpec;
}
namespace vessel::machine {
class ThinVm;
class FullVm;
class Controllable;
using devices::ConsoleSpec;
}  // namespace vessel::machine
namespace vessel::api {
class Server;
}

namespace vessel::cli {

using Runner = std::function<int()>;

// Adds the subcommand; the returned runner is called when it was chosen.
Runner add_run_command(CLI::App& app);
Runner add_boot_command(CLI::App& app);
Runner add_restore_command(CLI::App& app);

// The verbs that manage VMs through vesseld (daemon_commands.cc).
std::vector<Runner> add_daemon_commands(CLI::App& app);

// The jail flags of `vessel run`, `boot` and `restore` (jail_flags.cc).
struct JailFlags {
    bool no_jail = false;
    int64_t uid = -1, gid = -1;
    uint64_t nofile = 4096;
    std::string fsize, snapshot_dir;
};
void add_jail_flags(CLI::App* cmd, JailFlags& flags);
Result<machine::JailConfig> jail_config(const JailFlags& flags);
// First thing a VMM command does (unless the jail is off): this process
// forks into the jail's namespaces and only the VMM returns. `sockets`:
// paths the VMM will create, removed by the parent when left stale.
Result<> enter_jail_namespaces(const machine::JailConfig& config, std::vector<std::string> sockets);

// Runs a thin VM in this process until it ends, serving its control API on
// `api_socket` if not empty, and exits with its status (never returns).
// The VMM is locked into its jail (unless off) before the API or the guest
// starts.
[[noreturn]] void serve_thin_vm(std::unique_ptr<machine::ThinVm> vm, const std::string& api_socket,
                                const machine::JailConfig& jail);

// --console stdio|pty|file:PATH, for vessel boot and vessel restore.
Result<machine::ConsoleSpec> parse_console(const std::string& text);

// Runs a full machine (booted or restored) until it ends, serving its
// control API on `api_socket` if not empty; returns the exit status.
int run_full_machine(machine::FullVm& vm, const std::string& api_socket, bool verbose, const machine::JailConfig& jail);

// VESSEL_JAIL_SELFTEST=1: a VMM just locked into its jail prints what it
// can still reach (jail::probe(), JSON) and exits 0. The integration tests'
// view from inside a VMM a guest has taken over.
void jail_selftest();

// Listens for `vm`'s control API on `api_socket`; nullptr when the socket
// is empty (no API asked for). Start it once the VMM is jailed; stop it
// when the VM ends, which removes the socket file where the VMM can reach.
// Whether the VMM loads its seccomp filters (VESSEL_SECCOMP=off: not, for
// debugging with strace and the like).
bool seccomp_wanted();
Result<std::unique_ptr<api::Server>> listen_control_api(const std::string& api_socket, machine::Controllable& vm);

// Prints "vessel: MESSAGE" to stderr and returns `status`.
int die(const std::string& message, int status);

// The KVM device: $VESSEL_KVM_DEVICE if set (tests use it to simulate a host
// without KVM), else /dev/kvm.
std::string kvm_device();

}  // namespace vessel::cli
