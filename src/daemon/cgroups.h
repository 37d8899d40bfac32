// Resource limits for VMM processes: one control group per VM.
//
// cgroup v2 is used where its cpu, memory and pids controllers can be
// enabled for a `vessel` group below the daemon's own group; otherwise the v1
// cpu, memory and pids hierarchies (each with a `vessel` group below the
// daemon's own group there); otherwise no limits (mode "none", with the reason).
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
    std::optional<double> cpus;          // cpu.max quota in CPUs (0.5 = half a core)
    std::optional<uint64_t> memory;      // bytes
    std::optional<uint64_t> pids;        // tasks
};

// The groups of one VM. Serialized into the VM record so a restarted daemon
// can read statistics and remove them.
struct Placement {
    std::string mode;                // "v2", "v1" or "none"
    std::vector<std::string> paths;  // one (v2) or one per controller (v1)
    std::string memory_path;         // the group holding memory statistics ("" if none)
    std::string pids_path;

    nlohmann::json to_json() const;
    static Placement from_json(const nlohmann::json& j);
};

// Live figures of a VM's group(s); missing ones are nullopt.
struct CgroupStats {
    std::optional<uint64_t> memory_bytes, memory_limit, pids;
};

class Cgroups {
public:
    // Finds a usable hierarchy and creates the parent group named `parent`.
    static Cgroups detect(const std::string& parent = "vessel");

    const std::string& mode() const { return mode_; }
    const std::string& reason() const { return reason_; }  // why v2 (or v1) was not used
    const std::vector<std::string>& bases() const { return bases_; }

    // Creates the VM's group(s) and applies `limits`. Returns the placement
    // and, in `procs`, open cgroup.procs files a child writes "0" into to
    // join before it runs guest code.
    Result<Placement> create(const std::string& id, const Limits& limits, std::vector<Fd>& procs) const;
    // Removes the group(s); processes still inside are killed first.
    static void remove(const Placement& p);
    static CgroupStats stats(const Placement& p);

private:
    bool try_v2(const std::string& parent);
    bool try_v1(const std::string& parent);

    std::string mode_ = "none";
    std::string reason_;
    std::vector<std::string> bases_;  // v2: one; v1: cpu, memory, pids (present ones)
    std::vector<std::string> controllers_;
};

}  // namespace vessel::daemon
