// Resource limits for VMM processes: one control group per VM.
//
// cgroup v2 is used where its cpu, memory and pids controllers can be
// enabled for a `vessel` group below the daemon's own group; otherwise the v1
// cpu, memory and pids hierarchies (each with a `vessel` group below the
// daemon's own group there); otherwise no limits (mode "none", with the reason).
// `--cgroup-root DIR` names the cgroup2 directory to use instead of detecting
// one; it is used with whatever controllers it offers (see missing()).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace vessel::daemon {

struct Limits {
    std::optional<double> cpus;      // cpu.max quota in CPUs (0.5 = half a core)
    std::optional<uint64_t> memory;  // bytes
    std::optional<uint64_t> pids;    // tasks
};

// The groups of one VM. Serialized into the VM record so a restarted daemon
// can read statistics and remove them.
struct Placement {
    std::string mode;                // "v2", "v1" or "none"
    std::vector<std::string> paths;  // one (v2) or one per controller (v1)
    std::string memory_path;         // the group holding memory statistics ("" if none)
    std::string pids_path;
    std::vector<std::string> unenforced;  // controllers of limits that could not be applied

    nlohmann::json to_json() const;
    static Placement from_json(const nlohmann::json& j);
};

// How a new VMM process enters its groups before it runs any code of its own.
struct CgroupJoin {
    Fd v2_dir;              // the v2 group (O_PATH): clone3(CLONE_INTO_CGROUP) starts the child in it
    std::vector<Fd> procs;  // cgroup.procs files the child writes "0" into (v1; v2 without clone3)
};

// Live figures of a VM's group(s); missing ones are nullopt.
struct CgroupStats {
    std::optional<uint64_t> memory_bytes, memory_limit, pids;
};

// What a VM's limits did to it, from the counters of its group(s); a counter
// the kernel does not offer is nullopt.
struct LimitEvents {
    // Processes the OOM killer ended in the group: v2 memory.events
    // `oom_kill`, v1 memory.oom_control `oom_kill` (Linux 4.13+).
    std::optional<uint64_t> oom_kills;
    // v1 memory.failcnt: how often usage reached the limit (older kernels'
    // only trace of an OOM kill).
    std::optional<uint64_t> memory_limit_hits;
    // Forks refused by the pids limit: pids.events `max` (v2 and v1).
    std::optional<uint64_t> pids_limit_hits;

    // Whether the memory limit ended the VMM: an OOM kill was counted, or
    // (without that counter) the VMM died of SIGKILL after usage reached the limit.
    bool oom_killed(bool died_of_sigkill) const {
        if (oom_kills) return *oom_kills > 0;
        return died_of_sigkill && memory_limit_hits.value_or(0) > 0;
    }
    bool pids_limit_reached() const { return pids_limit_hits.value_or(0) > 0; }
};

class Cgroups {
public:
    // Finds a usable hierarchy and creates the parent group named `parent`.
    static Cgroups detect(const std::string& parent = "vessel");
    // Uses the cgroup2 directory `root` (a cgroup2 mount or a group delegated
    // to the daemon) with the cpu, memory and pids controllers it offers, and
    // creates `root/parent`. Fails if `root` is not a writable cgroup2 directory.
    static Result<Cgroups> at_root(const std::string& root, const std::string& parent = "vessel");
    // The v2 set-up of at_root() on any directory tree, without the file
    // system check (unit tests use a plain directory laid out like cgroupfs).
    static Result<Cgroups> open_v2(const std::string& root, const std::string& parent);

    const std::string& mode() const { return mode_; }
    const std::string& reason() const { return reason_; }  // why v2 (or v1) was not used, or what it lacks
    const std::vector<std::string>& bases() const { return bases_; }
    const std::vector<std::string>& controllers() const { return controllers_; }
    // The controllers (cpu, memory, pids) that the limits set in `requested`
    // need and this placement cannot offer, in that order.
    std::vector<std::string> missing(const Limits& requested) const;

    // Creates the VM's group(s) and applies the `limits` it can (the others
    // are listed in Placement::unenforced). Fills `join` with what the child
    // needs to enter them.
    Result<Placement> create(const std::string& id, const Limits& limits, CgroupJoin& join) const;
    // Removes the group(s); processes still inside are killed first.
    static void remove(const Placement& p);
    // Removes the parent group(s) if no VM group is left in them (when the
    // daemon stops; VMs that outlive it keep theirs, and create() makes the
    // parent again).
    void release() const;
    static CgroupStats stats(const Placement& p);
    static LimitEvents limit_events(const Placement& p);
    // The groups of VM `id` that exist in this placement's hierarchies (for
    // a VMM found without a record).
    Placement existing(const std::string& id) const;

private:
    bool try_v2(const std::string& parent);
    bool try_v1(const std::string& parent);
    // Enables what `dir` offers of cpu, memory and pids below it and creates
    // dir/parent; with `need_all`, fails unless all three are offered.
    bool init_v2(const std::string& dir, const std::string& parent, bool need_all);
    bool has(const char* controller) const;
    // Makes a parent group again (with its v2 controllers), errno set on failure.
    bool remake_base(const std::string& base) const;

    std::string mode_ = "none";
    std::string reason_;
    std::vector<std::string> bases_;  // v2: one; v1: cpu, memory, pids (present ones)
    std::vector<std::string> controllers_;
    std::string subtree_control_;  // v2: "+cpu +memory +pids" (those offered)
};

}  // namespace vessel::daemon
