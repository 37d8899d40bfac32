// Confinement of a VMM process (docs/security.md): the jail (jail/) with
// what each machine reaches while it runs, and for thin VMs a seccomp
// allowlist installed (on every thread) just before guest code first runs.
#pragma once

#include <string>

#include "base/result.h"
#include "jail/jail.h"

namespace vessel::vmm {

class ThinVm;
class FullVm;

struct JailConfig {
    jail::Options options;
    // `--snapshot-dir`: the one host directory a jailed VMM writes
    // snapshots under, bound writable at its own path ("" for none).
    std::string snapshot_dir;
};

// Locks the VMM into its jail (jail::lock) with what the machine reaches
// by path while it runs: a thin VM's sandbox directories (served from
// their jail paths from then on), a full machine's vsock socket directory
// (read-only: guest connections reach host listeners there), and the
// snapshot directory. Call with one thread, before the control API starts.
Result<> jail_thin_vmm(ThinVm& vm, const JailConfig& config);
Result<> jail_full_vmm(FullVm& vm, const JailConfig& config);

// Whether this process can write a snapshot into `dir` (absolute) by path:
// always when not jailed; jailed, only under the snapshot directory (a
// directory passed with the request is always reachable). The error says
// what to do instead.
Result<> snapshot_reachable(const std::string& dir);

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
