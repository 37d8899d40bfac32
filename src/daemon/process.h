// Starting VMM processes and recognising them later.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "daemon/cgroups.h"

namespace vessel::daemon {

struct SpawnRequest {
    std::string path;               // executable
    std::vector<std::string> argv;  // argv[0] included
    std::vector<std::string> envp;
    std::string console;                  // stdout and stderr are appended here
    mode_t console_mode = 0600;           // of the console file
    const CgroupJoin* cgroups = nullptr;  // entered before exec
};

struct Spawned {
    pid_t pid = 0;
    uint64_t starttime = 0;  // /proc/PID/stat field 22: tells a reused pid apart
};

// Starts the process in its own process group, with stdin from /dev/null,
// default signal dispositions and an empty signal mask, inside its groups
// before exec, so no code of it runs outside its limits: a v2 group is
// entered at birth (clone3 CLONE_INTO_CGROUP: no migration, no cgroup lock
// taken for writing); otherwise the child writes itself into each
// cgroup.procs before execve.
Result<Spawned> spawn(const SpawnRequest& req);

// Field 22 of /proc/PID/stat (clock ticks after boot), nullopt when the
// process is gone or a zombie.
std::optional<uint64_t> process_starttime(pid_t pid);

// A live process that leads its own process group and whose initial
// environment holds `entry` ("KEY=VALUE"), if any.
std::optional<pid_t> find_process_group_by_env(const std::string& entry);

// A live process group leader whose initial environment holds
// VESSEL_VM_ID=`vm_id`: a VMM that vesseld started.
struct VmmProcess {
    pid_t pid = 0;
    std::string vm_id;
};
std::vector<VmmProcess> find_vmm_processes();

// True if `pid` is alive and is the process started at `starttime`.
bool same_process(pid_t pid, uint64_t starttime);

// The VMM behind a VM's process: a jailed `vessel` (jail/jail.h) is a small
// parent whose one child runs the VM; an unjailed one is the VMM itself.
pid_t vmm_of(pid_t pid);

// user+system CPU time of the VMM of `pid` (all threads), in nanoseconds.
std::optional<uint64_t> process_cpu_ns(pid_t pid);
// Resident set size of the VMM of `pid`, in bytes.
std::optional<uint64_t> process_rss(pid_t pid);

}  // namespace vessel::daemon
