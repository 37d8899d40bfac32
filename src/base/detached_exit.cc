#include "base/detached_exit.h"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace vessel {
namespace {

// Runs in the helper. It shares the parent's memory, TLS and descriptor
// table, so it uses raw system calls only: no libc state, no errno.
int teardown(void*) {
    ::syscall(SYS_close_range, 0u, ~0u, 0u);  // last references to the VM, memfd and pipes
    ::syscall(SYS_exit_group, 0);
    return 0;
}

}  // namespace

void exit_with_detached_teardown(int status) {
    std::fflush(nullptr);
    // The helper's stack: static, one system call less than mapping one
    // (teardown needs a few hundred bytes). The memory stays the helper's
    // after this process exits: they share it.
    alignas(64) static char stack[16 * 1024];
    // No exit signal: nobody waits for the helper; init reaps it.
    if (::clone(teardown, stack + sizeof stack, CLONE_VM | CLONE_FILES, nullptr) > 0) ::_exit(status);
    std::exit(status);
}

}  // namespace vessel
