// Each `vessel` subcommand registers itself on the app and returns a
// callback that runs it once the command line has been parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"

namespace vessel::vmm {
class ThinVm;
class FullVm;
class Controllable;
struct ConsoleSpec;
}  // namespace vessel::vmm
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

// Runs a thin VM in this process until it ends, serving its control API on
// `api_socket` if not empty, and exits with its status (never returns).
[[noreturn]] void serve_thin_vm(std::unique_ptr<vmm::ThinVm> vm, const std::string& api_socket);

// --console stdio|pty|file:PATH, for vessel boot and vessel restore.
Result<vmm::ConsoleSpec> parse_console(const std::string& text);

// Runs a full machine (booted or restored) until it ends, serving its
// control API on `api_socket` if not empty; returns the exit status.
int run_full_machine(vmm::FullVm& vm, const std::string& api_socket, bool verbose);

// Starts serving `vm`'s control API on `api_socket`; nullptr when the socket
// is empty (no API asked for). Stop the server when the VM ends, which
// removes the socket file.
Result<std::unique_ptr<api::Server>> serve_control_api(const std::string& api_socket, vmm::Controllable& vm);

// Prints "vessel: MESSAGE" to stderr and returns `status`.
int die(const std::string& message, int status);

// The KVM device: $VESSEL_KVM_DEVICE if set (tests use it to simulate a host
// without KVM), else /dev/kvm.
std::string kvm_device();

}  // namespace vessel::cli
