// Running a VM in the foreground of the `vessel` process: its control API,
// its jail, and for thin VMs the seccomp filter, in that order.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "api/http.h"
#include "base/detached_exit.h"
#include "cli/commands.h"
#include "machine/api_routes.h"
#include "machine/confine.h"
#include "machine/exit_status.h"
#include "machine/thin_vm.h"

namespace vessel::cli {

Result<std::unique_ptr<api::Server>> listen_control_api(const std::string& api_socket, machine::Controllable& vm) {
    if (api_socket.empty()) return std::unique_ptr<api::Server>();
    auto server = api::Server::listen(api_socket, machine::vm_router(vm));
    if (!server) return wrap("--api-sock", server.error());
    return server;
}

// The test hook (VESSEL_JAIL_SELFTEST=1): a jailed VMM reports what it can
// still reach, as a subverted one would find out, and ends there.
void jail_selftest() {
    const char* hook = std::getenv("VESSEL_JAIL_SELFTEST");
    if (!hook || std::string_view(hook) != "1") return;
    std::printf("%s\n", jail::probe().to_json().c_str());
    std::fflush(stdout);
    jail::announce_exit(0);
    std::_Exit(0);
}

bool seccomp_wanted() {
    const char* seccomp = std::getenv("VESSEL_SECCOMP");
    return !(seccomp && std::string_view(seccomp) == "off");
}

void serve_thin_vm(std::unique_ptr<machine::ThinVm> vm, const std::string& api_socket,
                   const machine::JailConfig& jail) {
    auto server = listen_control_api(api_socket, *vm);
    if (!server) std::exit(die(server.error().message, kExitHostError));
    if (jail.options.enabled) {
        if (auto r = machine::jail_thin_vmm(*vm, jail); !r) std::exit(die(r.error().message, kExitHostError));
        jail_selftest();
    }
    if (*server) (*server)->start();
    // From here on the process only serves its guest: confine it.
    if (seccomp_wanted())
        if (auto r = machine::confine_thin_vmm(); !r) std::exit(die(r.error().message, kExitHostError));
    auto outcome = vm->run();
    // The socket disappears with the VM; a client polling it sees the end.
    if (*server) (*server)->stop();
    if (!outcome) std::exit(die(outcome.error().message, kExitHostError));
    if (!outcome->diagnostic.empty()) die(outcome->diagnostic, 0);
    // A program that failed after calls Vessel does not have: say which, so
    // the first thing a user reads is the likely cause.
    if (outcome->status != 0 && !outcome->unsupported.empty())
        die("unsupported system calls: " + outcome->unsupported + " (--trace-syscalls shows where)", 0);
    if (outcome->status != 0 && !outcome->out_of_memory.empty()) die(outcome->out_of_memory, 0);
    // The status is known: report it now (through the jail's parent, which
    // leaves at once) and let a helper destroy the VM (about a millisecond
    // of KVM and memory teardown) after we are gone.
    jail::announce_exit(outcome->status);
    vm.release();
    // In the jail that parent was the detaching: we are pid 1 of our pid
    // namespace, and a helper would be killed with us (the kernel tears the
    // VM down as we exit, after the caller has its status).
    if (jail::inside()) ::_exit(outcome->status);
    exit_with_detached_teardown(outcome->status);
}

}  // namespace vessel::cli
