// ThinVm's internals, shared by thin_vm.cc (creation, running, control) and
// snapshot.cc (capture and restore). Not part of the public interface.
#pragma once

#include <atomic>
#include <mutex>

#include "arch/x86/host_cpuid.h"
#include "base/timings.h"
#include "cpu/vcpu_set.h"
#include "kvm/kvm.h"
#include "machine/thin_vm.h"
#include "memory/address_space.h"
#include "memory/guest_memory.h"
#include "thin/process.h"

namespace vessel::machine {

// The host's own CPUID answers, through the per-boot cache: what a thin
// guest's `cpuid` answers, rewritten site or not (arch/x86/host_cpuid.h).
std::vector<arch::x86::CpuidAnswer> host_cpuid_answers();

// Guest-physical layout: page 0 unused; pages 1-4 hold the GDT, the IDT and
// its exception stubs with their stack (arch/x86/exceptions.h), and the TSS
// with a full I/O permission bitmap (identity-mapped, supervisor-only, so the
// guest cannot change them); everything above is the page pool.
//
// The bitmap is what lets a CPL3 `out dx, eax` with any DX (the syscall's
// third argument) exit to the VMM: PVM ignores RFLAGS.IOPL and checks the
// bitmap, and on VT-x/AMD-V an all-zero bitmap agrees with IOPL=3.
inline constexpr uint64_t kSystemBase = 0x1000;
inline constexpr uint64_t kGdtAddr = 0x1000;
inline constexpr uint64_t kIdtAddr = 0x1100;
inline constexpr uint64_t kExceptionStubsAddr = 0x1400;  // executable at CPL0: page 1 is not NX
inline constexpr uint64_t kExceptionStackTop = 0x2000;   // the TSS's RSP0, down into page 1
inline constexpr uint64_t kTssAddr = 0x2000;
inline constexpr uint64_t kTssSize = 0x68;  // 64-bit TSS without the bitmap
// One bit per port, all zero (allowed), plus a zero byte for the bits a
// 4-byte access at port 0xffff reaches past 65535.
inline constexpr uint64_t kIoBitmapSize = 65536 / 8 + 1;
inline constexpr uint32_t kTssLimit = kTssSize + kIoBitmapSize;  // includes the 0xff terminator byte
inline constexpr uint64_t kSystemEnd = 0x5000;
inline constexpr uint64_t kPoolStart = kSystemEnd;

struct ThinVm::Impl final : cpu::ExitHandler, thin::CpuAccess {
    ThinVmConfig config;
    std::unique_ptr<kvm::System> system;
    std::unique_ptr<kvm::Vm> vm;
    std::unique_ptr<memory::GuestMemory> mem;
    std::unique_ptr<memory::AddressSpace> as;
    std::unique_ptr<kvm::Vcpu> vcpu;
    uint64_t kvm_xcr0 = 0x3;  // the XCR0 bits KVM can give a guest (its leaf 0xd), set by create_vcpu
    // The vCPU's loop and the pause protocol; `runner` is the one vCPU in it.
    cpu::VcpuSet vcpus;
    cpu::VcpuRunner* runner = nullptr;
    // A host call the kick interrupted: once KVM has finished the exit, the
    // guest is put back on its `out` to make the call again (on_exit).
    bool restart_syscall = false;
    std::unique_ptr<thin::Process> process;
    Stats stats;
    RunOutcome outcome;
    PhaseTimer timer;

    // Serializes control calls (a resume waits for a snapshot) and guards
    // the fields below.
    mutable std::mutex lock;
    std::string started_at;
    std::string restored_from;
    std::string last_snapshot;  // parent for the next diff snapshot
    bool dirty_logging = false;

    // Exit counters, read by metrics() from other threads.
    std::atomic<uint64_t> exits_io{0}, exits_intr{0}, exits_other{0};

    // --- create()'s steps, in order (thin_vm.cc) ---
    struct Build;
    Result<> map_program(Build& b);
    Result<> build_system_pages(Build& b);
    Result<> find_syscall_sites(Build& b);
    Result<> enter_user_mode(Build& b);
    Result<> load_program(Build& b);
    Result<> set_entry_registers(Build& b);

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
    // `fsgsbase`: the vCPU runs with CR4.FSGSBASE (the guest may set FS itself).
    void finish_setup(thin::Sandbox sandbox, bool fsgsbase);

    // --- thin::CpuAccess ---
    bool set_segment_base(kvm_segment kvm_sregs::*seg, uint64_t base);
    uint64_t segment_base(kvm_segment kvm_sregs::*seg);
    bool set_fs_base(uint64_t base) override { return set_segment_base(&kvm_sregs::fs, base); }
    bool set_gs_base(uint64_t base) override { return set_segment_base(&kvm_sregs::gs, base); }
    uint64_t fs_base() override { return segment_base(&kvm_sregs::fs); }
    uint64_t gs_base() override { return segment_base(&kvm_sregs::gs); }

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

    // --- snapshot.cc ---
    Result<SnapshotInfo> write_snapshot(const SnapshotTarget& target, SnapshotType type);
    // Starts (or restarts) logging of dirty pages for the next diff snapshot.
    Result<> start_dirty_logging();
};

}  // namespace vessel::machine
