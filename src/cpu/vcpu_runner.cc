#include "cpu/vcpu_runner.h"

#include <pthread.h>

#include <cstdio>

namespace vessel::cpu {

VcpuRunner::VcpuRunner(kvm::Vcpu& vcpu) : vcpu_(&vcpu) { vcpu_->run_state()->kvm_valid_regs = KVM_SYNC_X86_REGS; }

void VcpuRunner::install_kick_signal() {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
    sigaction(kick_signal(), &sa, nullptr);
}

Result<> VcpuRunner::enter() {
    auto r = vcpu_->run();
    vcpu_->run_state()->kvm_dirty_regs = 0;
    return r;
}

void VcpuRunner::bind_thread() {
    thread_ = pthread_self();
    running_ = true;
}

void VcpuRunner::kick() {
    vcpu_->run_state()->immediate_exit = 1;
    if (running_) pthread_kill(thread_.load(), kick_signal());
}

Result<> VcpuRunner::flush_regs() {
    kvm_run* rs = vcpu_->run_state();
    if (!(rs->kvm_dirty_regs & KVM_SYNC_X86_REGS)) return {};
    rs->kvm_dirty_regs &= ~KVM_SYNC_X86_REGS;
    return vcpu_->set_regs(rs->s.regs.regs);
}

Result<> VcpuRunner::reload_regs() {
    auto r = vcpu_->get_regs();
    if (!r) return std::unexpected(r.error());
    vcpu_->run_state()->s.regs.regs = *r;
    return {};
}

std::string describe_exit(const kvm_run& run) {
    char buf[160];
    switch (run.exit_reason) {
        case KVM_EXIT_SHUTDOWN: return "shutdown (triple fault)";
        case KVM_EXIT_HLT: return "hlt";
        case KVM_EXIT_IO:
            std::snprintf(buf, sizeof buf, "port I/O %s port 0x%x size %u",
                          run.io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run.io.port, run.io.size);
            return buf;
        case KVM_EXIT_MMIO:
            std::snprintf(buf, sizeof buf, "MMIO %s 0x%llx len %u", run.mmio.is_write ? "write" : "read",
                          static_cast<unsigned long long>(run.mmio.phys_addr), run.mmio.len);
            return buf;
        case KVM_EXIT_FAIL_ENTRY:
            std::snprintf(buf, sizeof buf, "VM entry failed (hardware reason 0x%llx)",
                          static_cast<unsigned long long>(run.fail_entry.hardware_entry_failure_reason));
            return buf;
        case KVM_EXIT_INTERNAL_ERROR:
            std::snprintf(buf, sizeof buf, "KVM internal error (suberror %u)", run.internal.suberror);
            return buf;
        case KVM_EXIT_EXCEPTION: return "unhandled exception";
        case KVM_EXIT_DEBUG: return "debug exit";
        case KVM_EXIT_INTR: return "interrupted";
        case KVM_EXIT_SYSTEM_EVENT: return "system event";
        default: std::snprintf(buf, sizeof buf, "exit reason %u", run.exit_reason); return buf;
    }
}

}  // namespace vessel::cpu
