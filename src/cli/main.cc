// The `vessel` command: subcommands live in *_command.cc.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "cli/commands.h"
#include "machine/exit_status.h"

namespace vessel::cli {

int die(const std::string& message, int status) {
    std::fprintf(stderr, "vessel: %s\n", message.c_str());
    return status;
}

std::string kvm_device() {
    const char* dev = std::getenv("VESSEL_KVM_DEVICE");
    return dev && *dev ? dev : "/dev/kvm";
}

}  // namespace vessel::cli

#if defined(__SANITIZE_ADDRESS__)
// The sanitizer build (./dev test --sanitize): LeakSanitizer's check at exit
// stops the process with ptrace from a cloned thread, which the VMM's seccomp
// filter refuses, so a clean run would end killed. The VMM's leaks are looked
// for in the test binaries, which run the same code without a filter.
extern "C" const char* __asan_default_options() { return "detect_leaks=0"; }
#endif

int main(int argc, char** argv) {
    using namespace vessel::cli;
    CLI::App app{"Vessel: virtual machines on KVM"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "vessel 0.1.0");
    std::vector<Runner> runners;
    // `vessel run` is on the cold-start path: build only its parser then
    // (every other subcommand costs page faults at start-up). Anything else,
    // including --help and mistakes, gets the full command set.
    if (argc > 1 && std::string_view(argv[1]) == "run") {
        runners.push_back(add_run_command(app));
    } else {
        runners = {add_run_command(app), add_restore_command(app), add_boot_command(app)};
        for (auto& r : add_daemon_commands(app)) runners.push_back(std::move(r));
    }
    // CLI11 would answer a misspelt command with "A subcommand is required".
    if (argc > 1 && argv[1][0] != '-' &&
        app.get_subcommands([&](CLI::App* sub) { return sub->check_name(argv[1]); }).empty())
        return die("unknown command '" + std::string(argv[1]) + "' (vessel --help lists the commands)",
                   vessel::kExitHostError);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int r = app.exit(e);
        return r == 0 ? 0 : vessel::kExitHostError;
    }
    for (auto& r : runners)
        if (int status = r(); status >= 0) return status;
    return vessel::kExitHostError;
}
