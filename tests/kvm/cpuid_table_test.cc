// What a thin guest's un-rewritten `cpuid` gets on a PVM host that traps it:
// KVM's table as KVM holds it once the vCPU has a thin guest's CR4 and XCR0.
// It must be the host's answers (the guest-side table's) for every question
// that table answers. On a host that does not trap, the instruction gives
// the host's answers by itself; tests/guest/cpuid.c checks the guest's view
// end to end on whichever kind of host runs it, and this test covers the
// trapping kind on both.
#include <gtest/gtest.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/host_cpuid.h"
#include "arch/x86/x86.h"
#include "kvm/kvm.h"

namespace vessel {
namespace {

namespace x86 = arch::x86;

TEST(KvmCpuid, TrappedCpuidAnswersAsTheGuestSideTableDoes) {
    ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0) << "this test needs a usable /dev/kvm";
    auto sys = kvm::System::open();
    ASSERT_TRUE(sys) << sys.error().message;
    auto vm = sys->create_vm();
    ASSERT_TRUE(vm) << vm.error().message;
    (void)vm->enable_cap(KVM_CAP_SPLIT_IRQCHIP, 0);  // as thin VMs do (machine/thin_vm.cc)
    auto vcpu = vm->create_vcpu(0);
    ASSERT_TRUE(vcpu) << vcpu.error().message;
    auto supported = sys->supported_cpuid();
    ASSERT_TRUE(supported) << supported.error().message;

    const std::vector<x86::CpuidAnswer> host = x86::read_host_cpuid();
    const auto table = x86::with_host_answers(*supported, host);
    ASSERT_TRUE(vcpu->set_cpuid(table));
    auto sregs = vcpu->get_sregs();
    ASSERT_TRUE(sregs);
    x86::setup_long_mode(*sregs, {.cr3 = 0x100000, .gdt_base = 0x1000, .tss_base = 0x2000, .user_mode = true});
    sregs->cr4 = (sregs->cr4 & ~x86::cr4::kOSXSAVE) | x86::cr4_promised_by(table);
    ASSERT_TRUE(vcpu->set_sregs(*sregs));
    kvm_xcrs xcrs{};
    xcrs.nr_xcrs = 1;
    xcrs.xcrs[0].value = x86::thin_xcr0(table, x86::supported_xcr0(*supported));
    ASSERT_TRUE(vcpu->set_xcrs(xcrs));

    auto held = vcpu->get_cpuid();
    ASSERT_TRUE(held) << held.error().message;
    for (const x86::CpuidAnswer& a : host) {
        const kvm_cpuid_entry2* e = x86::find_cpuid(*held, a.leaf, a.subleaf == x86::kAnySubleaf ? 0 : a.subleaf);
        ASSERT_NE(e, nullptr) << std::hex << a.leaf << "." << a.subleaf;
        EXPECT_TRUE(e->eax == a.eax && e->ebx == a.ebx && e->ecx == a.ecx && e->edx == a.edx)
            << std::hex << "leaf " << a.leaf << "." << a.subleaf << ": KVM " << e->eax << " " << e->ebx << " " << e->ecx
            << " " << e->edx << ", host " << a.eax << " " << a.ebx << " " << a.ecx << " " << a.edx;
    }
}

}  // namespace
}  // namespace vessel
