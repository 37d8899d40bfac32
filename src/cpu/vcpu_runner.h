// Runs a vCPU and hands each exit to the machine that owns it.
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
    kvm_regs& regs() { return vcpu_->run_state()->s.regs.regs; }
    void mark_regs_dirty() { vcpu_->run_state()->kvm_dirty_regs |= KVM_SYNC_X86_REGS; }

    // Runs until the handler says stop. Kicks (pause requests) surface as
    // KVM_EXIT_INTR exits to the handler.
    Result<> run(ExitHandler& handler);

    // Thread-safe: makes the vCPU leave KVM_RUN soon (immediate_exit plus a
    // signal to the vCPU thread).
    void kick();

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
