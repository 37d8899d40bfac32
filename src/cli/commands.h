// Each `vessel` subcommand registers itself on the app and returns a
// callback that runs it once the command line has been parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace vessel::cli {

using Runner = std::function<int()>;

// Adds the subcommand; the returned runner is called when it was chosen.
Runner add_run_command(CLI::App& app);

// Prints "vessel: MESSAGE" to stderr and returns `status`.
int die(const std::string& message, int status);

// The KVM device: $VESSEL_KVM_DEVICE if set (tests use it to simulate a host
// without KVM), else /dev/kvm.
std::string kvm_device();

}  // namespace vessel::cli
