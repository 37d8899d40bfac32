// One vCPU's entry into the guest, its registers and its kick. The loop
// around it and the pause protocol are VcpuSet's (cpu/vcpu_set.h); the
// machine that owns the vCPU handles its exits (ExitHandler).
//
// Register state travels through KVM's sync-regs area, so the common exit
// (a thin guest's system call) costs one KVM_RUN and no extra ioctls.
#pragma once

#include <atomic>
#include <csignal>
#include <string>

#include "base/result.h"
#include "kvm/kvm.h"

namespace vessel::cpu {

enum class Action { kContinue, kStop };

class ExitHandler {
public:
    virtual ~ExitHandler() = default;
    // Called for every exit; `run` holds the exit data and, with sync regs,
    // the general registers (modify them and call mark_regs_dirty()).
    virtual Action on_exit(kvm_run& run) = 0;
};

class VcpuRunner {
public:
    explicit VcpuRunner(kvm::Vcpu& vcpu);

    kvm::Vcpu& vcpu() { return *vcpu_; }
    kvm_run& run_state() { return *vcpu_->run_state(); }
    kvm_regs& regs() { return vcpu_->run_state()->s.regs.regs; }
    void mark_regs_dirty() { vcpu_->run_state()->kvm_dirty_regs |= KVM_SYNC_X86_REGS; }

    // One KVM_RUN. A kick (or a signal) shows as a KVM_EXIT_INTR exit.
    Result<> enter();

    // Thread-safe: makes the vCPU leave KVM_RUN soon (immediate_exit plus a
    // signal to the thread bound to it, if any).
    void kick();
    // The thread that enters this vCPU (set while a loop runs it).
    void bind_thread();
    void unbind_thread() { running_ = false; }
    pthread_t thread() const { return thread_.load(); }

    // Writes pending sync-regs changes to KVM now, so KVM_GET_REGS reads
    // them (a paused vCPU's registers are exact).
    Result<> flush_regs();
    // Reads the registers from KVM into the sync-regs area (after someone
    // may have set them).
    Result<> reload_regs();

    // Installs the no-op handler for the kick signal; call once per process.
    static void install_kick_signal();
    static int kick_signal() { return SIGRTMIN + 1; }

private:
    kvm::Vcpu* vcpu_;
    std::atomic<pthread_t> thread_{};
    std::atomic<bool> running_{false};
};

// One line describing an exit, for diagnostics ("shutdown (triple fault)").
std::string describe_exit(const kvm_run& run);

}  // namespace vessel::cpu
