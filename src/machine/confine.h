// Confinement of a VMM process (docs/security.md): the jail (jail/) with
// what each machine reaches while it runs, and for thin VMs the seccomp
// allowlist of jail/seccomp.h.
#pragma once

#include <string>

#include "base/result.h"
#include "jail/jail.h"
#include "jail/seccomp.h"

namespace vessel::machine {

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

// The thin VMM's seccomp filters (jail/seccomp.h), loaded just before
// guest code first runs.
inline Result<> confine_thin_vmm() { return jail::load_thin_vmm_filters(); }
// A full machine's: the process's filter now, and each vCPU thread and the
// I/O thread stack their own when they start.
Result<> confine_full_vmm(FullVm& vm);

}  // namespace vessel::machine
