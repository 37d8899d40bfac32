// A thin microVM: one Linux program (static or dynamic) in guest user mode, its system
// calls executed by the VMM.
//
// Threads: run() executes the guest on the calling thread (the vCPU thread).
// The control calls (pause, resume, snapshot, shutdown, describe, metrics)
// are safe from any other thread, e.g. the control API's.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "machine/control.h"
#include "thin/sandbox.h"

namespace vessel::machine {

// Guest memory a thin VM may have (--mem).
inline constexpr uint64_t kMinThinVmMemory = 1ull << 20;
inline constexpr uint64_t kMaxThinVmMemory = 64ull << 30;
// Processes a thin VM may hold at once (--pids): each is a vCPU and a host thread.
inline constexpr uint32_t kDefaultThinVmProcesses = 1024;
inline constexpr uint32_t kMaxThinVmProcesses = 4096;

struct ThinVmConfig {
    std::string program;            // host path of the executable (a dynamic one's loader: from `root`)
    std::vector<std::string> argv;  // argv[0] included
    std::vector<std::string> envp;
    uint64_t mem_size = 64ull << 20;
    std::string root;  // empty: an empty directory
    std::vector<thin::MountSpec> rw;
    bool trace_syscalls = false;
    std::string kvm_path = "/dev/kvm";
    std::string cache_dir;  // rewrite cache; empty: the default
    std::string workdir;    // the guest's working directory; empty: "/"
    // The guest's credentials (real, effective and saved); unset: the
    // caller's.
    std::optional<uint32_t> uid, gid;
    // Guest processes alive at once, pid 1 included (--pids): a fork past
    // it fails with EAGAIN.
    uint32_t max_processes = kDefaultThinVmProcesses;
};

// How a run ended.
struct RunOutcome {
    int status = 0;             // exit status for the vessel process
    bool guest_exited = false;  // the program called exit/exit_group
    std::string diagnostic;     // one line, when the guest crashed
    std::string unsupported;    // calls answered ENOSYS (thin::Process::unsupported_summary)
    std::string out_of_memory;  // how often guest memory ran out, and the flag that helps; empty: never
};

class ThinVm final : public Controllable {
public:
    // Checks the configuration first (EINVAL with a message naming the
    // flag). Errors carry an exit status class in `sys_errno`: ENOENT
    // (program not found), ENOEXEC (not loadable), anything else (host
    // problem); see exit_status_for().
    static Result<std::unique_ptr<ThinVm>> create(const ThinVmConfig& config);
    // Rebuilds a VM from a snapshot directory (see docs/snapshot-format.md);
    // memory is mapped copy-on-write from the snapshot and loads on first
    // touch. `kvm_path` as in ThinVmConfig.
    static Result<std::unique_ptr<ThinVm>> restore(const std::string& dir, const std::string& kvm_path = "/dev/kvm");
    ~ThinVm();

    // Runs the guest until it exits, crashes or is shut down.
    Result<RunOutcome> run();

    // Control, from another thread. Wrong states fail with EBUSY.
    Result<> pause() override;
    Result<> resume() override;
    // The VM must be paused. A diff snapshot holds the pages written since
    // the previous snapshot of this VM and names it as its parent.
    Result<SnapshotInfo> snapshot(const SnapshotTarget& target, SnapshotType type) override;
    void shutdown() override;

    Description describe() const override;
    Metrics metrics() const override;

    struct Stats {
        uint64_t exits = 0;
        uint64_t syscalls = 0;
        uint64_t unsupported_syscalls = 0;
        size_t rewritten_sites = 0;  // `syscall` and `cpuid` sites (loader/rewriter.h)
        bool rewrite_cache_hit = false;
    };
    Stats stats() const;

    // The guest's file-system view: the jail (machine/confine.h) rebinds it.
    thin::Sandbox& sandbox();

    struct Impl;

private:
    ThinVm();
    std::unique_ptr<Impl> impl_;
};

}  // namespace vessel::machine
