// A thin microVM: one static Linux program in guest user mode, its system
// calls executed by the VMM.
#pragma once

#include <cstdint>
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

// Why a run ended when it was not the program's own exit.
struct RunOutcome {
    int status = 0;            // exit status for the vessel process
    bool guest_exited = false; // the program called exit/exit_group
    std::string diagnostic;    // one line, when the guest crashed
};

class ThinVm {
public:
    // Errors carry an exit status class in `sys_errno`: ENOENT (program not
    // found), ENOEXEC (not loadable), anything else (host problem).
    static Result<std::unique_ptr<ThinVm>> create(const ThinVmConfig& config);
    ~ThinVm();

    Result<RunOutcome> run();

    struct Stats {
        uint64_t exits = 0;
        uint64_t syscalls = 0;
        uint64_t unsupported_syscalls = 0;
        size_t syscall_sites = 0;
        bool rewrite_cache_hit = false;
    };
    Stats stats() const;

private:
    ThinVm();
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace vessel::vmm
