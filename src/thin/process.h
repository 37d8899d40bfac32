// A thin guest's process state and its system-call entry point.
#pragma once

#include <array>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <string>

#include "memory/address_space.h"
#include "thin/fd_table.h"
#include "thin/sandbox.h"
#include "thin/syscall_table.h"

namespace vessel::thin {

// The kernel's struct sigaction layout on x86-64.
struct kernel_sigaction_t {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

// What the syscall layer needs from the vCPU that runs the guest.
class CpuAccess {
public:
    virtual ~CpuAccess() = default;
    virtual bool set_fs_base(uint64_t base) = 0;
    virtual bool set_gs_base(uint64_t base) = 0;
    virtual uint64_t fs_base() = 0;
    virtual uint64_t gs_base() = 0;
};

struct ProcessOptions {
    bool trace = false;
    std::FILE* trace_out = stderr;
    uint32_t uid = 0, gid = 0;
};

class Process {
public:
    Process(memory::AddressSpace& as, Sandbox sandbox, CpuAccess& cpu, ProcessOptions options);

    // Executes one system call; returns RAX.
    int64_t handle(const SyscallArgs& args);

    bool exited() const { return exited_; }
    int exit_status() const { return exit_status_; }
    void set_brk_start(uint64_t start) { brk_start_ = brk_ = start; }
    // Connects guest fds 0-2 to the host's.
    void attach_stdio();

    // Counters for metrics: calls per number, and calls answered -ENOSYS.
    const std::array<uint64_t, kMaxSyscall>& call_counts() const { return counts_; }
    uint64_t unsupported_calls() const { return unsupported_; }

    // State the families share.
    memory::AddressSpace& as() { return *as_; }
    memory::GuestVirtual mem() const { return as_->view(); }
    Sandbox& sandbox() { return sandbox_; }
    FdTable& fds() { return fds_; }
    CpuAccess& cpu() { return *cpu_; }
    const ProcessOptions& options() const { return options_; }
    std::string& cwd() { return cwd_; }
    uint64_t& brk() { return brk_; }
    uint64_t brk_start() const { return brk_start_; }
    unsigned& umask() { return umask_; }
    uint64_t& clear_child_tid() { return clear_child_tid_; }
    uint64_t& signal_mask() { return signal_mask_; }
    std::array<kernel_sigaction_t, 64>& sigactions() { return sigactions_; }
    std::array<uint64_t, 4>& sigaltstack() { return sigaltstack_; }
    void exit(int status) {
        exited_ = true;
        exit_status_ = status & 0xff;
    }

    // Resolves a guest path argument (at `ptr`, relative to `dirfd`) to an
    // absolute guest path; returns -errno (EFAULT, ENAMETOOLONG, ENOENT, EBADF, ENOTDIR).
    int64_t read_path(int dirfd, uint64_t ptr, std::string& out, bool allow_empty = false);

private:
    memory::AddressSpace* as_;
    Sandbox sandbox_;
    CpuAccess* cpu_;
    ProcessOptions options_;
    FdTable fds_;
    std::string cwd_ = "/";
    uint64_t brk_start_ = 0, brk_ = 0;
    unsigned umask_ = 022;
    uint64_t clear_child_tid_ = 0;
    uint64_t signal_mask_ = 0;
    std::array<kernel_sigaction_t, 64> sigactions_{};
    std::array<uint64_t, 4> sigaltstack_{0, 2 /* SS_DISABLE */, 0, 0};
    bool exited_ = false;
    int exit_status_ = 0;
    std::array<uint64_t, kMaxSyscall> counts_{};
    uint64_t unsupported_ = 0;
};

// Writes the strace-style line for one call.
void trace_syscall(std::FILE* out, Process& p, const SyscallArgs& args, int64_t result);

}  // namespace vessel::thin
