// What a thin guest's un-rewritten `cpuid` gets, on whichever kind of host
// runs the test: on one that traps the instruction, KVM's table as KVM holds
// it once the vCPU has a thin guest's CR4 and XCR0, which may lack some of
// the host's features (KVM_SET_CPUID2 trims them); on one that does not, the
// host's own answers. machine/thin_vm.cc puts exactly that on the guest's
// CPUID page for rewritten sites; tests/guest/cpuid.c checks the two kinds
// of site against each other end to end.
#include <gtest/gtest.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/host_cpuid.h"
#include "arch/x86/x86.h"
#include "kvm/kvm.h"
#include "machine/cpuid_probe.h"

namespace vessel {
namespace {

namespace x86 = arch::x86;

TEST(KvmCpuid, AnUnrewrittenCpuidGetsTheAnswersTheGuestSideTableIsGiven) {
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

    auto traps = machine::cpuid_traps(*sys, *held);
    ASSERT_TRUE(traps) << traps.error().message;
    std::printf("cpuid at CPL3 %s\n", *traps ? "traps to KVM" : "is answered by the CPU");
    const std::vector<x86::CpuidAnswer> expected = *traps ? x86::answers_as_held(host, *held) : host;
    // Leaves whose answers follow neither the APIC ID nor XCR0 (the probe's
    // vCPU keeps KVM's default XCR0): the feature leaves KVM trims.
    const std::pair<uint32_t, uint32_t> asked[] = {{7, 0}, {7, 1}, {0x80000001, 0}, {0x80000008, 0}};
    for (auto [leaf, subleaf] : asked) {
        auto want = std::find_if(expected.begin(), expected.end(), [&](const x86::CpuidAnswer& a) {
            return a.leaf == leaf && (a.subleaf == x86::kAnySubleaf || a.subleaf == subleaf);
        });
        if (want == expected.end()) continue;  // a leaf this CPU does not have
        auto got = machine::cpuid_in_guest(*sys, *held, leaf, subleaf);
        ASSERT_TRUE(got) << got.error().message;
        EXPECT_TRUE(got->eax == want->eax && got->ebx == want->ebx && got->ecx == want->ecx && got->edx == want->edx)
            << std::hex << "leaf " << leaf << "." << subleaf << ": guest " << got->eax << " " << got->ebx << " "
            << got->ecx << " " << got->edx << ", expected " << want->eax << " " << want->ebx << " " << want->ecx << " "
            << want->edx;
    }
}

}  // namespace
}  // namespace vessel
