// The control surface every machine offers to the control API, and the
// plain data it answers with.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "base/text.h"
#include "cpu/vcpu_set.h"

namespace vessel::machine {

// A machine's state is its vCPUs' (cpu/vcpu_set.h).
using VmState = cpu::RunState;
using cpu::to_string;

enum class SnapshotType { kFull, kDiff };

struct SnapshotInfo {
    std::string path;
    SnapshotType type = SnapshotType::kFull;
    uint64_t memory_bytes = 0;  // bytes of guest memory written
    uint64_t pages = 0;
    std::string parent;  // diff snapshots: the snapshot they build on
};

struct Metrics {
    uint64_t exits_io = 0, exits_intr = 0, exits_other = 0;
    std::map<std::string, uint64_t> syscalls;  // by name, calls made
    uint64_t unsupported_syscalls = 0;
    uint64_t vcpu_time_ns = 0;
    uint64_t guest_memory_touched_bytes = 0;
    uint64_t io_read_bytes = 0, io_write_bytes = 0;
    uint64_t processes = 0;  // a thin VM's live guest processes (0: a full machine)
};

struct Description {
    VmState state = VmState::kCreated;
    int pid = 0;
    std::string program;
    std::vector<std::string> argv;
    uint64_t mem_bytes = 0;
    std::string started_at;  // RFC 3339, UTC
    bool has_exit_status = false;
    int exit_status = 0;
    std::string restored_from;  // snapshot directory, when restored
};

// Where a snapshot goes: the directory `path` (made absolute, created when
// missing), or, when `dir` is set, that directory, which the client opened
// and passed over the control socket; `path` then only names it in the
// records. A jailed VMM reaches no host path (machine/confine.h): passing the
// directory is how a client snapshots it anywhere.
struct SnapshotTarget {
    std::string path;
    std::shared_ptr<Fd> dir;
};

// What the control API can do with a machine, thin or full.
class Controllable {
public:
    virtual ~Controllable() = default;
    // Wrong states fail with EBUSY; unsupported operations with ENOTSUP.
    virtual Result<> pause() = 0;
    virtual Result<> resume() = 0;
    virtual Result<SnapshotInfo> snapshot(const SnapshotTarget& target, SnapshotType type) = 0;
    virtual void shutdown() = 0;
    virtual Description describe() const = 0;
    virtual Metrics metrics() const = 0;
};

}  // namespace vessel::machine
