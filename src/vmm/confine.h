// Confinement of a thin VM's VMM process: a seccomp allowlist installed
// (on every thread) just before guest code first runs. See docs/security.md.
#pragma once

#include "base/result.h"

namespace vessel::vmm {

// Allows the system calls a thin VMM makes while its guest runs — file and
// descriptor calls on what the sandbox opened, memory, threads (clone only
// with CLONE_VM), signals, clocks, KVM and terminal ioctls, the control
// API's accepted connections, snapshot writing — and answers every other
// one EPERM (clone3 ENOSYS, so libc falls back to the checkable clone). So
// a VMM a guest managed to subvert still cannot execve, ptrace, mount,
// open network sockets, load modules or change credentials; when one of
// its standard streams is a terminal, a second filter also stops it from
// pushing input into that terminal (TIOCSTI). The rules are in
// seccomp_rules.cc; libseccomp turns them into BPF at build time.
Result<> confine_thin_vmm();

}  // namespace vessel::vmm
