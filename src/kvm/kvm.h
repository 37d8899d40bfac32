// RAII wrappers over the /dev/kvm, VM and vCPU file descriptors.
//
// Every ioctl returns a Result; the messages name the operation so a user can
// tell which step of VM creation failed.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/mapping.h"
#include "base/result.h"

namespace vessel::kvm {

class Vm;
class Vcpu;

// A capability Vessel cannot run without, with the reason it is needed.
struct RequiredCap {
    int cap;
    const char* name;
    const char* why;
};

class System {
public:
    // Opens `path` (normally /dev/kvm) and checks the API version. Errors say
    // what to do: load the module, join the kvm group, ...
    static Result<System> open(const std::string& path = "/dev/kvm");

    int fd() const { return fd_.get(); }
    int check_extension(int cap) const;
    // Fails with a single clear line naming the first missing capability.
    Result<> require(const std::vector<RequiredCap>& caps) const;
    Result<Vm> create_vm() const;
    int vcpu_mmap_size() const { return vcpu_mmap_size_; }
    Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;

private:
    Fd fd_;
    int vcpu_mmap_size_ = 0;
};

class Vm {
public:
    Vm(Fd fd, int vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}

    int fd() const { return fd_.get(); }
    int check_extension(int cap) const;
    Result<> set_user_memory_region(uint32_t slot, uint64_t guest_phys, uint64_t size, void* host, uint32_t flags = 0);
    Result<Vcpu> create_vcpu(int id);
    Result<> set_tss_addr(uint64_t addr);
    Result<> set_identity_map_addr(uint64_t addr);
    Result<> create_irqchip();
    Result<> create_pit2();
    Result<> irq_line(uint32_t irq, bool level);
    Result<> ioeventfd(const kvm_ioeventfd& spec);
    Result<> irqfd(const kvm_irqfd& spec);
    Result<> get_dirty_log(uint32_t slot, void* bitmap);
    Result<> enable_cap(uint32_t cap, uint64_t arg0 = 0);

    // In-kernel device state, for snapshots. `chip` is KVM_IRQCHIP_PIC_MASTER,
    // KVM_IRQCHIP_PIC_SLAVE or KVM_IRQCHIP_IOAPIC.
    Result<kvm_irqchip> get_irqchip(uint32_t chip) const;
    Result<> set_irqchip(const kvm_irqchip& state);
    Result<kvm_pit_state2> get_pit2() const;
    Result<> set_pit2(const kvm_pit_state2& state);
    // The VM's kvmclock: KVM_SET_CLOCK makes guest time continue from `clock`.
    Result<kvm_clock_data> get_clock() const;
    Result<> set_clock(const kvm_clock_data& clock);

private:
    Fd fd_;
    int vcpu_mmap_size_;
};

class Vcpu {
public:
    Vcpu(Fd fd, Mapping run, int id) : fd_(std::move(fd)), run_(std::move(run)), id_(id) {}

    int fd() const { return fd_.get(); }
    int id() const { return id_; }
    kvm_run* run_state() const { return reinterpret_cast<kvm_run*>(run_.data()); }

    // One KVM_RUN. EINTR (a kick) is reported as success with
    // exit_reason KVM_EXIT_INTR so callers handle it as an ordinary exit.
    Result<> run();

    Result<kvm_regs> get_regs() const;
    Result<> set_regs(const kvm_regs& regs);
    Result<kvm_sregs> get_sregs() const;
    Result<> set_sregs(const kvm_sregs& sregs);
    Result<kvm_fpu> get_fpu() const;
    Result<> set_fpu(const kvm_fpu& fpu);
    Result<kvm_xcrs> get_xcrs() const;
    Result<> set_xcrs(const kvm_xcrs& xcrs);
    // The legacy 4 KiB XSAVE area (kvm_xsave.region).
    Result<std::vector<uint32_t>> get_xsave() const;
    Result<> set_xsave(const std::vector<uint32_t>& region);
    Result<kvm_lapic_state> get_lapic() const;
    Result<> set_lapic(const kvm_lapic_state& lapic);
    Result<kvm_vcpu_events> get_events() const;
    Result<> set_events(const kvm_vcpu_events& events);
    Result<> set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
    // The table as KVM holds it now: what it answers a trapped `cpuid` with,
    // including the bits it keeps in step with CR4 and XCR0.
    Result<std::vector<kvm_cpuid_entry2>> get_cpuid() const;
    // Reads/writes the MSRs named in `indices`; returns the values in order.
    Result<std::vector<uint64_t>> get_msrs(const std::vector<uint32_t>& indices) const;
    Result<> set_msrs(const std::vector<std::pair<uint32_t, uint64_t>>& msrs);
    // The vCPU's TSC offset (guest TSC = host TSC + offset, at KVM's default
    // frequency): KVM_VCPU_TSC_CTRL, Linux 5.16 and later.
    Result<> set_tsc_offset(uint64_t offset);
    Result<> set_mp_state(uint32_t state);
    Result<kvm_mp_state> get_mp_state() const;
    Result<kvm_debugregs> get_debugregs() const;
    Result<> set_debugregs(const kvm_debugregs& regs);

private:
    Fd fd_;
    Mapping run_;
    int id_;
};

}  // namespace vessel::kvm
