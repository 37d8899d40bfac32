// A thin microVM: one static Linux program in guest user mode, its system
// calls executed by the VMM.
//
// Threads: run() executes the guest on the calling thread (the vCPU thread).
// The control calls (pause, resume, snapshot, shutdown, describe, metrics)
// are safe from any other thread, e.g. the control API's.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/result.h"
#include "thin/sandbox.h"

namespace vessel::vmm {

struct ThinVmConfig {
    std::string program;              // host path of the executable
    std::vector<std::string> argv;    // argv[0] included
    std::vector<std::string> envp;
    uint64_t mem_size = 64ull << 20;
    std::string root;                 // empty: an empty directory
    std::vector<thin::MountSpec> rw;
    bool trace_syscalls = false;
    std::string kvm_path = "/dev/kvm";
    std::string cache_dir;            // rewrite cache; empty: the default
};

// How a run ended.
struct RunOutcome {
    int status = 0;             // exit status for the vessel process
    bool guest_exited = false;  // the program called exit/exit_group
    std::string diagnostic;     // one line, when the guest crashed
};

enum class VmState { kCreated, kRunning, kPaused, kExited };
const char* to_string(VmState s);

enum class SnapshotType { kFull, kDiff };

struct SnapshotInfo {
    std::string path;
    SnapshotType type = SnapshotType::kFull;
    uint64_t memory_bytes = 0;  // bytes of guest memory written
    uint64_t pages = 0;
    std::string parent;         // diff snapshots: the snapshot they build on
};

struct Metrics {
    uint64_t exits_io = 0, exits_intr = 0, exits_other = 0;
    std::map<std::string, uint64_t> syscalls;  // by name, calls made
    uint64_t unsupported_syscalls = 0;
    uint64_t vcpu_time_ns = 0;
    uint64_t guest_memory_touched_bytes = 0;
    uint64_t io_read_bytes = 0, io_write_bytes = 0;
};

struct Description {
    VmState state = VmState::kCreated;
    int pid = 0;
    std::string program;
    std::vector<std::string> argv;
    uint64_t mem_bytes = 0;
    std::string started_at;     // RFC 3339, UTC
    bool has_exit_status = false;
    int exit_status = 0;
    std::string restored_from;  // snapshot directory, when restored
};

class ThinVm {
public:
    // Errors carry an exit status class in `sys_errno`: ENOENT (program not
    // found), ENOEXEC (not loadable), anything else (host problem).
    static Result<std::unique_ptr<ThinVm>> create(const ThinVmConfig& config);
    // Rebuilds a VM from a snapshot directory (see docs/snapshot-format.md);
    // memory is mapped copy-on-write from the snapshot and loads on first
    // touch. `kvm_path` as in ThinVmConfig.
    static Result<std::unique_ptr<ThinVm>> restore(const std::string& dir, const std::string& kvm_path = "/dev/kvm");
    ~ThinVm();

    // Runs the guest until it exits, crashes or is shut down.
    Result<RunOutcome> run();

    // Control, from another thread. Wrong states fail with EBUSY.
    Result<> pause();
    Result<> resume();
    // The VM must be paused. A diff snapshot holds the pages written since
    // the previous snapshot of this VM and names it as its parent.
    Result<SnapshotInfo> snapshot(const std::string& dir, SnapshotType type);
    void shutdown();

    Description describe() const;
    Metrics metrics() const;

    struct Stats {
        uint64_t exits = 0;
        uint64_t syscalls = 0;
        uint64_t unsupported_syscalls = 0;
        size_t syscall_sites = 0;
        bool rewrite_cache_hit = false;
    };
    Stats stats() const;

    struct Impl;

private:
    ThinVm();
    std::unique_ptr<Impl> impl_;
};

}  // namespace vessel::vmm
