// The VMM's seccomp filters (docs/security.md, "System calls"), built at
// build time from seccomp_rules.cc and loaded here.
#pragma once

#include "base/result.h"

namespace vessel::jail {

// Allows the system calls a thin VMM makes while its guest runs — file and
// descriptor calls on what the sandbox opened, memory, threads (clone only
// with CLONE_VM), signals, clocks, KVM and terminal ioctls, the control
// API's accepted connections, snapshot writing — and answers every other
// one EPERM (clone3 ENOSYS, so libc falls back to the checkable clone). So
// a VMM a guest managed to subvert still cannot execve, ptrace, mount,
// open network sockets, load modules or change credentials; when one of
// its standard streams is a terminal, a second filter also stops it from
// pushing input into that terminal (TIOCSTI). Sets no_new_privs, then
// loads the filters on every thread of the process.
Result<> load_thin_vmm_filters();

// A full machine's VMM, on every thread: the same, plus AF_UNIX sockets and
// connect (a vsock device reaching host listeners).
Result<> load_full_vmm_filters();

// On the calling thread only, stacked on the process's filter: what a full
// machine's vCPU thread does while it runs (KVM ioctls, device registers,
// console output, eventfd signals, allocations). No file, socket or
// process call: a guest that subverts an exit handler reaches no further.
Result<> load_vcpu_thread_filter();
// The same for a full machine's I/O thread: the devices' back-ends on the
// descriptors they hold and vsock's AF_UNIX sockets; no path is opened,
// made or removed from there.
Result<> load_io_thread_filter();

}  // namespace vessel::jail
