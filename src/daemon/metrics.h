// Prometheus text exposition (format 0.0.4) of the daemon and its VMs.
#pragma once

#include <sys/types.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "daemon/cgroups.h"

namespace vessel::daemon {

struct VmSample {
    std::string id, name, state;
    pid_t pid = 0;
    uint64_t starttime = 0;
    Placement cgroup;
    std::string socket;  // "" when the VMM has no API
    std::optional<uint64_t> cpu_ns, rss, memory_bytes;
    nlohmann::json vmm;  // GET /vm/metrics of the VMM, or null
};

struct DaemonSample {
    uint64_t created_total = 0, create_failures_total = 0;
    std::map<std::string, uint64_t> by_state;
};

std::string format_prometheus(const DaemonSample& daemon, const std::vector<VmSample>& vms);

}  // namespace vessel::daemon
