// Running a thin VM in the foreground of the `vessel` process.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "base/detached_exit.h"
#include "cli/commands.h"
#include "vmm/api_routes.h"
#include "vmm/confine.h"
#include "vmm/exit_status.h"
#include "vmm/thin_vm.h"

namespace vessel::cli {

Result<std::unique_ptr<api::Server>> serve_control_api(const std::string& api_socket, vmm::Controllable& vm) {
    if (api_socket.empty()) return std::unique_ptr<api::Server>();
    auto server = api::Server::listen(api_socket, vmm::vm_router(vm));
    if (!server) return wrap("--api-sock", server.error());
    (*server)->start();
    return server;
}

void serve_thin_vm(std::unique_ptr<vmm::ThinVm> vm, const std::string& api_socket) {
    auto server = serve_control_api(api_socket, *vm);
    if (!server) std::exit(die(server.error().message, kExitHostError));
    // From here on the process only serves its guest: confine it
    // (VESSEL_SECCOMP=off leaves it unconfined, for debugging).
    const char* seccomp = std::getenv("VESSEL_SECCOMP");
    if (!(seccomp && std::string_view(seccomp) == "off"))
        if (auto r = vmm::confine_thin_vmm(); !r) std::exit(die(r.error().message, kExitHostError));
    auto outcome = vm->run();
    // The socket disappears with the VM; a client polling it sees the end.
    if (*server) (*server)->stop();
    if (!outcome) std::exit(die(outcome.error().message, kExitHostError));
    if (!outcome->diagnostic.empty()) die(outcome->diagnostic, 0);
    // A program that failed after calls Vessel does not have: say which, so
    // the first thing a user reads is the likely cause.
    if (outcome->status != 0 && !outcome->unsupported.empty())
        die("unsupported system calls: " + outcome->unsupported + " (--trace-syscalls shows where)", 0);
    // The status is known: report it now and let a helper destroy the VM
    // (about a millisecond of KVM and memory teardown) after we are gone.
    vm.release();
    exit_with_detached_teardown(outcome->status);
}

}  // namespace vessel::cli
