// The inside of a thin VM (ThinVm::Impl) and of each of its processes
// (ThinVm::Impl::Task), shared by the files that implement them:
// thin_vm.cc (creation, restore, the exits, control, snapshots) and
// thin_tree.cc (the process tree: fork, exit, wait, groups, signals between
// processes). Not for use outside machine/.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/timings.h"
#include "cpu/vcpu_set.h"
#include "kvm/kvm.h"
#include "machine/snapshot_dir.h"
#include "machine/thin_vm.h"
#include "memory/address_space.h"
#include "memory/guest_memory.h"
#include "thin/process.h"

namespace vessel::machine {

struct ThinVm::Impl final : thin::ProcessTree {
    ThinVmConfig config;
    std::unique_ptr<kvm::System> system;
    std::unique_ptr<kvm::Vm> vm;
    std::unique_ptr<memory::GuestMemory> mem;
    std::unique_ptr<memory::AddressSpace> as;
    std::unique_ptr<kvm::Vcpu> vcpu;
    uint64_t kvm_xcr0 = 0x3;   // the XCR0 bits KVM can give a guest (its leaf 0xd), set by create_vcpu
    uint32_t guest_hwcap = 0;  // AT_HWCAP from the vCPU's CPUID, set by create_vcpu
    // The vCPUs' loops and the pause protocol: pid 1's vCPU is the first.
    cpu::VcpuSet vcpus;
    std::unique_ptr<thin::Process> process;     // pid 1's
    std::vector<kvm_cpuid_entry2> cpuid_table;  // the vCPUs', set by create_vcpu
    Stats stats;
    RunOutcome outcome;
    PhaseTimer timer;

    // Serializes control calls (a resume waits for a snapshot) and guards
    // the fields below.
    mutable std::mutex lock;
    std::string started_at;
    std::string restored_from;
    snapshot::DirtyTracking dirty;  // KVM's dirty logs; the parent of the next diff

    // A restored guest's ITIMER_REAL: armed by run() once SIGALRM is the guest's.
    std::optional<itimerval> restored_timer;

    // Exit counters, read by metrics() from other threads.
    std::atomic<uint64_t> exits_io{0}, exits_intr{0}, exits_other{0};

    // --- create()'s steps, in order (thin_vm.cc) ---
    struct ElfFile;
    struct Build;
    Result<> map_program(Build& b, const thin::Sandbox& sandbox);
    Result<> open_program_file(Build& b, const thin::Sandbox& sandbox);
    Result<> follow_script(Build& b, const thin::Sandbox& sandbox);
    Result<> open_in_guest(const thin::Sandbox& sandbox, const std::string& path, const std::string& what, ElfFile& f);
    Result<> map_elf(Build& b, ElfFile& f);
    Result<> map_interpreter(Build& b, const thin::Sandbox& sandbox);
    Result<> rewrite_elf(Build& b, ElfFile& f, bool& cache_hit);
    Result<> build_system_pages(Build& b);
    Result<> find_syscall_sites(Build& b);
    Result<> enter_user_mode(Build& b);
    Result<> load_program(Build& b);
    Result<> set_entry_registers(Build& b);
    Result<> match_cpuid_answers(Build& b);

    // --- set-up pieces shared by create() and restore() ---
    Result<> open_kvm();
    Result<> register_memory(uint32_t flags = 0);
    // The vCPU, with the CPUID table a thin guest sees (host_cpuid.h: the
    // host's answers over KVM's table). Returns that table.
    Result<std::vector<kvm_cpuid_entry2>> create_vcpu(std::span<const arch::x86::CpuidAnswer> host);
    // open_kvm, register_memory and create_vcpu. Returns the vCPU's CPUID.
    Result<std::vector<kvm_cpuid_entry2>> create_kvm_vm(std::span<const arch::x86::CpuidAnswer> host);
    // The guest-side clock turns the guest's `rdtsc` into time by a formula
    // the VMM calibrates with its own `rdtsc`: the two must count alike.
    // Under PVM they do; KVM on VT-x/AMD-V counts a vCPU's TSC from its
    // creation (or from a restored snapshot's value). Sets the vCPU's offset
    // to 0 (once its MSRs are final); where KVM cannot, returns the offset
    // measured, for the process to add.
    uint64_t align_guest_tsc();
    // A program's stack (also an execve's): 8 MiB, or an eighth of small VMs.
    uint64_t program_stack_size() const { return std::min<uint64_t>(8ull << 20, config.mem_size / 8); }
    // `fsgsbase`: the vCPU runs with CR4.FSGSBASE (the guest may set FS itself).
    void finish_setup(thin::Sandbox sandbox, bool fsgsbase);

    // --- running: one Task per guest process ---
    struct Task;
    std::unique_ptr<Task> init;  // pid 1's: runs on run()'s thread

    // --- the process tree (thin::ProcessTree), under tree_mu ---
    // The highest pid, after which pids start again from 2: below the
    // pid_max the guest's /proc/sys/kernel/pid_max says (32768).
    static constexpr int64_t kPidMax = 32767;
    struct Member {
        int64_t ppid = 0;
        int64_t pgid = thin::kGuestPid, sid = thin::kGuestPid;  // pid 1 leads both
        Task* task = nullptr;                                   // null once it ended
        int wait_status = 0;                                    // once it ended
        int exit_signal = SIGCHLD;
        bool vfork_done = true;  // false while a vfork parent waits for this child's exec or exit
    };
    mutable std::mutex tree_mu;
    std::map<int64_t, Member> members;  // live processes and zombies
    int64_t next_pid = thin::kGuestPid + 1;
    // Every task made for a child: the running ones and the spare ones,
    // whose process ended and whose vCPU, page tables and thread slot the
    // next child takes.
    std::vector<std::unique_ptr<Task>> child_tasks;
    std::vector<Task*> spare;
    std::mutex new_task_mu;  // take_task() making a task
    int64_t fork(thin::Process& parent, const thin::UserContext& regs, const thin::CloneRequest& request) override;
    int64_t wait(thin::Process& p, WaitFor target, bool nohang, bool keep, int& status) override;
    int64_t group(thin::Process& p, int64_t pid, bool session) override;
    int64_t set_group(thin::Process& p, int64_t pid, int64_t pgid) override;
    int64_t new_session(thin::Process& p) override;
    int64_t foreground(thin::Process& p, std::optional<int64_t> set) override;
    int64_t foreground_group = thin::kGuestPid;  // under tree_mu
    int64_t parent(const thin::Process& p) override;
    int64_t kill(thin::Process& sender, int64_t pid, int sig) override;
    size_t count() override { return live_count(); }
    void execed(thin::Process& p) override;
    // vfork: the parent waits (not interruptibly, as Linux's) until the
    // child has exec'd or exited, or the VM stops.
    void wait_for_vfork(Task& parent, int64_t child);
    size_t live_count() const;
    // The task for a new child: a spare one, or a new vCPU and address
    // space. Null (errno set) when KVM or guest memory refuses.
    Task* take_task();
    // The vCPU state of a child of `parent` entering at `regs`.
    Result<> set_child_vcpu(Task& parent, Task& child, const thin::UserContext& regs, const thin::CloneRequest& req);
    // A child process ended (on its own thread): zombie, orphans to pid 1,
    // SIGCHLD to its parent; its task becomes spare.
    void child_exited(Task& t, int wait_status);
    // The task of the live process `pid` (tree_mu held), else null.
    Task* live(int64_t pid) {
        auto it = members.find(pid);
        return it == members.end() ? nullptr : it->second.task;
    }

    // --- snapshots ---
    Result<SnapshotInfo> write_snapshot(const SnapshotTarget& target, SnapshotType type);
};

// One guest process and the vCPU that runs it (ARCHITECTURE.md, "A thin VM
// holds a process tree"). pid 1's vCPU, address space and process are the
// VM's own (create() and restore() build them); a child's are the task's,
// and stay with it for the next child once its process has ended.
struct ThinVm::Impl::Task final : cpu::ExitHandler, thin::CpuAccess {
    explicit Task(Impl& machine) : vm(machine) {}
    Impl& vm;
    int64_t pid = thin::kGuestPid;
    memory::AddressSpace* as = nullptr;
    kvm::Vcpu* vcpu = nullptr;
    cpu::VcpuRunner* runner = nullptr;
    size_t slot = 0;  // the vCPU's index in vm.vcpus
    thin::Process* process = nullptr;
    std::unique_ptr<kvm::Vcpu> own_vcpu;           // a child's
    std::unique_ptr<memory::AddressSpace> own_as;  // a child's
    std::unique_ptr<thin::Process> own_process;    // a child's, while it lives
    // A host call the kick interrupted: once KVM has finished the exit, the
    // guest is put back on its `out` to make the call again (on_exit).
    bool restart_syscall = false;
    // MSR_LSTAR points at the entry code's stub for where `syscall` lands
    // here (return_from_lstar), not at the one that exits to find out.
    bool lstar_fast = false;
    // Signals the VM's other processes sent this one (kill, a child's
    // SIGCHLD): taken by its own thread at its next exit, as the VMM's own
    // signals are by pid 1's. `wake` (an eventfd; pid 1: the self-pipe) is
    // what its waits in pause, sigsuspend and wait4 watch.
    std::atomic<uint64_t> incoming{0};
    Fd wake;
    int wake_read() const;
    // From another thread: queues `sig` and interrupts whatever the task does.
    void post(int sig) {
        incoming.fetch_or(1ull << (sig - 1));
        notify();
    }
    // Wakes the task's waits (a child changed) and kicks its vCPU.
    void notify();
    // A wait of the task's own thread: until notify() (or a signal to the
    // VMM, for pid 1) or `timeout_ms` (-1: none); the wake-ups are taken.
    // False when a kick (a signal, a pause, the VM stopping) ended it.
    bool wait_for_wake(int timeout_ms);
    // Takes any wake-ups left (a task made ready for a new process).
    void clear_wake();
    // Signals wait to be taken: the VMM's (pid 1 only) or other processes'.
    bool signals_waiting() const;

    // --- thin::CpuAccess ---
    bool set_segment_base(kvm_segment kvm_sregs::*seg, uint64_t base);
    uint64_t segment_base(kvm_segment kvm_sregs::*seg);
    bool set_fs_base(uint64_t base) override { return set_segment_base(&kvm_sregs::fs, base); }
    bool set_gs_base(uint64_t base) override { return set_segment_base(&kvm_sregs::gs, base); }
    uint64_t fs_base() override { return segment_base(&kvm_sregs::fs); }
    uint64_t gs_base() override { return segment_base(&kvm_sregs::gs); }
    std::optional<std::vector<uint32_t>> xsave() override {
        auto r = vcpu->get_xsave();
        return r ? std::optional(std::move(*r)) : std::nullopt;
    }
    bool set_xsave(const std::vector<uint32_t>& region) override { return vcpu->set_xsave(region).has_value(); }

    // --- cpu::ExitHandler ---
    cpu::Action on_exit(kvm_run& run) override;
    cpu::Action crash(const std::string& why);
    // The crash line and status for a fault at `rip`/`rsp` (not the vCPU's registers).
    cpu::Action crash_at(const std::string& why, uint64_t rip, uint64_t rsp, int status);
    // An exception stub's report (a one-byte `out` from page 1): the guest
    // dies of the signal Linux would send, with a line naming it.
    cpu::Action guest_exception();
    // A rewritten `syscall` (`out dx, eax`): the thin process serves it.
    cpu::Action guest_syscall(kvm_run& run);
    // Queues the signals sent to the VMM since the last look as the guest's;
    // false when there were none.
    bool take_host_signals();
    // A kick for such a signal stopped the guest in its own code: deliver.
    cpu::Action host_signal_while_running();
    // The registers of the call exiting at `r` as its caller sees them (RIP
    // its return address, RFLAGS its flags); `via_lstar`: an un-rewritten one.
    thin::UserContext call_context(const kvm_regs& r, bool& via_lstar);
    // After a host call for the guest returned EINTR: a signal from outside
    // is the guest's to take (its handler, then -EINTR or the call again
    // with SA_RESTART; or death), and this is what the vCPU does next. None
    // (our own kick for a pause, an ignored signal): make the call again.
    // `made` false: the signal came before the call (while the VMM served
    // the exit before it): its handler runs first, then the call is made.
    std::optional<cpu::Action> signal_interrupts_call(uint64_t nr, thin::UserContext& ctx, bool via_lstar,
                                                      bool made = true);
    // The vCPU goes on in `ctx` (a handler entered, a frame returned from).
    cpu::Action enter_context(const thin::UserContext& ctx);
    // The guest process ended (exit, or a signal): the VM stops with its status.
    cpu::Action process_exited();
    // An un-rewritten `syscall` that came through MSR_LSTAR: back to the
    // caller at CPL3, through `sysretq` where it entered CPL0.
    cpu::Action return_from_lstar(int64_t result, const thin::UserContext& ctx);
    // Where the guest's call returns to: past the `out` of a site rewritten
    // in place, or the address the entry code saved (it exits from its own
    // code; abi/thin_guest.h).
    uint64_t syscall_return_address(const kvm_regs& r);
};

}  // namespace vessel::machine
