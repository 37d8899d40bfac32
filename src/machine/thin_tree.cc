// The thin VM's process tree (thin::ProcessTree): fork and vfork make a
// child Task (a vCPU, a thread, an address space), exit makes a zombie and
// hands the task to the next child, wait reaps, and kill, groups, sessions
// and the terminal's foreground group follow Linux (docs/thin-vm.md,
// "Processes").
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>

#include "arch/x86/x86.h"
#include "machine/thin_layout.h"
#include "machine/thin_vm_impl.h"
#include "thin/guest_entry.h"

namespace vessel::machine {

namespace x86 = arch::x86;

ThinVm::Impl::Task* ThinVm::Impl::take_task() {
    {
        std::lock_guard g(tree_mu);
        if (!spare.empty()) {
            Task* t = spare.back();
            spare.pop_back();
            return t;
        }
    }
    std::lock_guard one_at_a_time(new_task_mu);  // vCPU ids are the set's indices
    auto t = std::make_unique<Task>(*this);
    auto v = vm->create_vcpu(static_cast<int>(vcpus.size()));
    if (!v) return nullptr;
    t->own_vcpu = std::make_unique<kvm::Vcpu>(std::move(*v));
    t->wake.reset(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    t->own_as = std::make_unique<memory::AddressSpace>(*mem, as->allocator());
    // A vCPU other than the first waits for INIT and SIPI (its LAPIC is
    // KVM's): runnable at once here, there being no guest kernel to start it.
    if (!t->own_vcpu->set_cpuid(cpuid_table) || !t->own_vcpu->set_mp_state(KVM_MP_STATE_RUNNABLE) || !t->wake ||
        !t->own_as->init())
        return nullptr;
    (void)t->own_vcpu->set_tsc_offset(0);  // the guest-side clock's formula is pid 1's (align_guest_tsc)
    t->as = t->own_as.get();
    t->vcpu = t->own_vcpu.get();
    t->slot = vcpus.add_running(*t->vcpu, *t);
    t->runner = &vcpus.runner(t->slot);
    std::lock_guard g(tree_mu);
    child_tasks.push_back(std::move(t));
    return child_tasks.back().get();
}

Result<> ThinVm::Impl::set_child_vcpu(Task& parent, Task& child, const thin::UserContext& regs,
                                      const thin::CloneRequest& req) {
    auto sregs = parent.vcpu->get_sregs();
    if (!sregs) return std::unexpected(sregs.error());
    sregs->cr3 = child.as->tables().root();
    // At CPL3 whatever the parent was in (an un-rewritten call at CPL0).
    sregs->cs = x86::flat_segment(x86::selector::kUserCode, 0xb, 3, true);
    sregs->ss = x86::flat_segment(x86::selector::kUserData, 0x3, 3, false);
    if (req.flags & CLONE_SETTLS) sregs->fs.base = req.tls;
    if (auto r = child.vcpu->set_sregs(*sregs); !r) return r;
    const std::vector<uint32_t> msrs = {x86::msr::kStar, x86::msr::kLstar, x86::msr::kSfmask};
    auto values = parent.vcpu->get_msrs(msrs);
    if (!values) return std::unexpected(values.error());
    if (!child.vcpu->set_msrs({{msrs[0], (*values)[0]}, {msrs[1], (*values)[1]}, {msrs[2], (*values)[2]}}))
        return fail("KVM refused the child's system-call MSRs", EINVAL);
    child.lstar_fast = parent.lstar_fast;
    if (auto xcrs = parent.vcpu->get_xcrs(); !xcrs || !child.vcpu->set_xcrs(*xcrs))
        return fail("the child's XCR0", EINVAL);
    if (auto fpu = parent.vcpu->get_xsave(); !fpu || !child.vcpu->set_xsave(*fpu))
        return fail("the child's FPU state", EINVAL);
    // What the `syscall` leaves behind, returning 0 at the call's return address.
    kvm_regs& r = child.runner->regs();
    r = regs.regs;
    r.rax = 0;
    r.rcx = r.rip;
    r.r11 = r.rflags;
    r.rflags |= x86::rflags::kIOPL3;
    child.runner->mark_regs_dirty();
    child.restart_syscall = false;
    child.incoming = 0;
    child.clear_wake();
    return {};
}

int64_t ThinVm::Impl::fork(thin::Process& parent, const thin::UserContext& regs, const thin::CloneRequest& req) {
    Task* self;
    int64_t pid;
    {
        std::lock_guard g(tree_mu);
        self = live(parent.pid());
        // Zombies hold their pids too, as on Linux: a guest that never reaps
        // cannot grow the table without bound.
        if (!self || members.size() >= config.max_processes) return -EAGAIN;
        while (members.contains(next_pid)) next_pid = next_pid >= kPidMax ? thin::kGuestPid + 1 : next_pid + 1;
        pid = next_pid;
        next_pid = next_pid >= kPidMax ? thin::kGuestPid + 1 : next_pid + 1;
        const Member& from = members.at(parent.pid());
        members[pid] = Member{parent.pid(),
                              from.pgid,
                              from.sid,
                              nullptr,
                              0,
                              req.exit_signal,
                              !(req.flags & CLONE_VFORK)};  // held for the child
    }
    Task* child = take_task();
    auto give_up = [&](int64_t error) {
        std::lock_guard g(tree_mu);
        members.erase(pid);
        if (child) spare.push_back(child);
        return error;
    };
    if (!child) return give_up(-EAGAIN);
    // Page 1 (the descriptor tables and exception stack) and the entry
    // code's shared pages are each process's; the rest outside VMAs is shared.
    auto own_page = [](uint64_t va) {
        return va == kSystemBase || va == thin::kGuestSharedVa || va == thin::kGuestCountsVa;
    };
    // vfork (posix_spawn's CLONE_VM|CLONE_VFORK): the child borrows the
    // parent's pages until it execs; the parent waits meanwhile.
    const bool vfork = req.flags & CLONE_VFORK;
    if (auto r = child->as->copy_from(*self->as, own_page, vfork); !r) {
        (void)child->as->reset();
        parent.note_out_of_memory();
        return give_up(-ENOMEM);
    }
    if (auto r = set_child_vcpu(*self, *child, regs, req); !r) {
        (void)child->as->reset();
        return give_up(-EAGAIN);
    }
    child->pid = pid;
    child->own_process = parent.fork_child(*child->as, *child, pid, child->wake.get(), req);
    child->process = child->own_process.get();
    {
        std::lock_guard g(tree_mu);
        members[pid].task = child;
    }
    auto launched = vcpus.launch(child->slot, *child, [this, child](size_t, const Result<cpu::VcpuSet::End>&) {
        // Its loop ended: the process exited (its task is spare now), or
        // the VM is stopping, or KVM failed it (it dies as if killed).
        if (child->process && !vcpus.stopping()) child_exited(*child, SIGKILL);
        std::lock_guard g(tree_mu);
        if (!child->process) spare.push_back(child);
    });
    if (!launched) {  // no thread for it (the host's pids limit): as if it never was
        child->own_process.reset();
        child->process = nullptr;
        (void)child->as->reset();
        return give_up(-EAGAIN);
    }
    if (vfork) wait_for_vfork(*self, pid);
    return pid;
}

void ThinVm::Impl::execed(thin::Process& p) {
    std::lock_guard g(tree_mu);
    Member& m = members.at(p.pid());
    if (m.vfork_done) return;
    m.vfork_done = true;
    if (Task* parent_task = live(m.ppid)) parent_task->notify();
}

void ThinVm::Impl::wait_for_vfork(Task& parent, int64_t child) {
    while (!vcpus.stopping()) {
        {
            std::lock_guard g(tree_mu);
            auto it = members.find(child);
            if (it == members.end() || it->second.vfork_done) return;
        }
        (void)parent.wait_for_wake(100);  // not interrupted by signals: looks again
    }
}

void ThinVm::Impl::child_exited(Task& t, int wait_status) {
    // As Linux's exit: the files are closed (a pipe's reader sees its end)
    // and the memory freed before the parent hears of it.
    process->absorb_counts(*t.own_process);  // pid 1's: the VM's metrics and summary
    t.own_process.reset();
    t.process = nullptr;
    (void)t.as->reset();
    std::lock_guard g(tree_mu);
    Member& m = members[t.pid];
    m.task = nullptr;
    m.wait_status = wait_status;
    m.vfork_done = true;
    bool orphans = false;
    for (auto& [id, other] : members)
        if (other.ppid == t.pid) {
            other.ppid = thin::kGuestPid;
            orphans = true;
        }
    if (orphans) init->notify();
    if (Task* parent_task = live(m.ppid)) {
        if (m.exit_signal > 0 && m.exit_signal <= 64)
            parent_task->post(m.exit_signal);
        else
            parent_task->notify();
    }
}

int64_t ThinVm::Impl::wait(thin::Process& p, WaitFor target, bool nohang, bool keep, int& status) {
    Task* self;
    {
        std::lock_guard g(tree_mu);
        self = live(p.pid());
    }
    if (!self) return -ECHILD;
    while (true) {
        {
            std::lock_guard g(tree_mu);
            bool any = false;
            for (auto it = members.begin(); it != members.end(); ++it) {
                const auto& [id, m] = *it;
                if (m.ppid != p.pid() || (target.kind == WaitFor::kPid && id != target.id) ||
                    (target.kind == WaitFor::kGroup && m.pgid != target.id))
                    continue;
                any = true;
                if (m.task) continue;  // alive
                status = m.wait_status;
                const int64_t reaped = id;
                if (!keep) members.erase(it);
                return reaped;
            }
            if (!any) return -ECHILD;
        }
        if (nohang) return 0;
        if (self->signals_waiting()) return -EINTR;
        if (!self->wait_for_wake(-1)) return -EINTR;  // a kick: a signal, a pause, the VM stopping
    }
}

int64_t ThinVm::Impl::group(thin::Process& p, int64_t pid, bool session) {
    std::lock_guard g(tree_mu);
    auto it = members.find(pid == 0 ? p.pid() : pid);
    if (it == members.end()) return -ESRCH;
    return session ? it->second.sid : it->second.pgid;
}

// setpgid(2): `pid` (0: the caller) is the caller or a child of it in its
// session, and not a session leader; `pgid` (0: pid) is pid itself (a new
// group) or a group of the caller's session.
int64_t ThinVm::Impl::set_group(thin::Process& p, int64_t pid, int64_t pgid) {
    std::lock_guard g(tree_mu);
    const Member& caller = members.at(p.pid());
    if (pid == 0) pid = p.pid();
    if (pgid == 0) pgid = pid;
    auto it = members.find(pid);
    if (it == members.end() || !it->second.task || (pid != p.pid() && it->second.ppid != p.pid())) return -ESRCH;
    Member& target = it->second;
    if (target.sid != caller.sid || target.sid == pid) return -EPERM;  // another session, or its leader
    if (pgid != pid && std::none_of(members.begin(), members.end(), [&](const auto& m) {
            return m.second.task && m.second.pgid == pgid && m.second.sid == caller.sid;
        }))
        return -EPERM;
    target.pgid = pgid;
    return 0;
}

// setsid(2): a process that leads no group starts a session and a group.
int64_t ThinVm::Impl::new_session(thin::Process& p) {
    std::lock_guard g(tree_mu);
    const int64_t pid = p.pid();
    if (std::any_of(members.begin(), members.end(), [&](const auto& m) { return m.second.pgid == pid; })) return -EPERM;
    Member& self = members.at(pid);
    self.pgid = self.sid = pid;
    return pid;
}

int64_t ThinVm::Impl::foreground(thin::Process& p, std::optional<int64_t> set) {
    std::lock_guard g(tree_mu);
    if (!set) return foreground_group;
    const int64_t sid = members.at(p.pid()).sid;
    if (sid != thin::kGuestPid) return -ENOTTY;  // a new session has no controlling terminal
    if (std::none_of(members.begin(), members.end(),
                     [&](const auto& m) { return m.second.task && m.second.pgid == *set && m.second.sid == sid; }))
        return -EPERM;
    foreground_group = *set;
    return 0;
}

int64_t ThinVm::Impl::parent(const thin::Process& p) {
    std::lock_guard g(tree_mu);
    auto it = members.find(p.pid());
    return it == members.end() ? 0 : it->second.ppid;
}

int64_t ThinVm::Impl::kill(thin::Process& sender, int64_t pid, int sig) {
    std::lock_guard g(tree_mu);
    bool found = false;
    for (auto& [id, m] : members) {
        if (!m.task || id == sender.pid()) continue;
        // One process; the sender's group (0) or another (< -1); or
        // everyone but pid 1 (-1), as in a pid namespace.
        const bool chosen = pid > 0     ? id == pid
                            : pid == 0  ? m.pgid == members.at(sender.pid()).pgid
                            : pid == -1 ? id != thin::kGuestPid
                                        : m.pgid == -pid;
        if (!chosen) continue;
        found = true;
        if (sig) m.task->post(sig);
    }
    return found || pid == 0 ? 0 : -ESRCH;
}

size_t ThinVm::Impl::live_count() const {
    std::lock_guard g(tree_mu);
    return static_cast<size_t>(
        std::count_if(members.begin(), members.end(), [](const auto& m) { return m.second.task != nullptr; }));
}

}  // namespace vessel::machine
