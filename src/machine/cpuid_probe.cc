#include "machine/cpuid_probe.h"

#include <cstring>

#include "arch/x86/cpuid.h"
#include "arch/x86/x86.h"
#include "base/cache_dir.h"
#include "base/safe_file.h"
#include "memory/guest_memory.h"
#include "memory/page_tables.h"

namespace vessel::machine {
namespace {

namespace x86 = arch::x86;
namespace pte = memory::pte;

// The probe VM's guest-physical layout: 64 KiB of RAM, identity-mapped by
// one 2 MiB page, so the first write above RAM is an MMIO exit.
constexpr uint64_t kRamSize = 0x10000;
constexpr uint64_t kPml4 = 0x1000, kPdpt = 0x2000, kPd = 0x3000;
constexpr uint64_t kGdt = 0x4000, kTss = 0x4800, kCode = 0x5000, kStackTop = 0x8000;
constexpr uint32_t kOut = 0x100000;  // EAX, EBX, ECX, EDX land at +0, +4, +8, +12

// mov eax, leaf; mov ecx, subleaf; cpuid; mov [kOut + 4i], each register; jmp $
std::vector<uint8_t> probe_code(uint32_t leaf, uint32_t subleaf) {
    std::vector<uint8_t> code;
    auto imm32 = [&](uint32_t v) {
        for (int i = 0; i < 4; ++i) code.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    code.push_back(0xb8);
    imm32(leaf);
    code.push_back(0xb9);
    imm32(subleaf);
    code.insert(code.end(), {0x0f, 0xa2});
    const uint8_t modrm[] = {0x04, 0x1c, 0x0c, 0x14};  // [disp32] with EAX, EBX, ECX, EDX
    for (int i = 0; i < 4; ++i) {
        code.insert(code.end(), {0x89, modrm[i], 0x25});
        imm32(kOut + 4 * i);
    }
    code.insert(code.end(), {0xeb, 0xfe});
    return code;
}

}  // namespace

Result<CpuidRegs> cpuid_in_guest(const kvm::System& sys, const std::vector<kvm_cpuid_entry2>& table, uint32_t leaf,
                                 uint32_t subleaf) {
    auto mem = memory::GuestMemory::create(kRamSize, "vessel-cpuid-probe");
    if (!mem) return std::unexpected(mem.error());
    auto put = [&](uint64_t gpa, uint64_t v) { std::memcpy(mem->host(gpa, 8), &v, 8); };
    const uint64_t table_flags = pte::kPresent | pte::kWrite | pte::kUser;
    put(kPml4, kPdpt | table_flags);
    put(kPdpt, kPd | table_flags);
    put(kPd, 0 | table_flags | pte::kHuge);
    const std::vector<uint8_t> code = probe_code(leaf, subleaf);
    std::memcpy(mem->host(kCode, code.size()), code.data(), code.size());

    auto vm = sys.create_vm();
    if (!vm) return std::unexpected(vm.error());
    (void)vm->enable_cap(KVM_CAP_SPLIT_IRQCHIP, 0);  // as thin VMs have it
    if (auto r = vm->set_user_memory_region(0, 0, kRamSize, mem->host_base()); !r) return std::unexpected(r.error());
    auto vcpu = vm->create_vcpu(0);
    if (!vcpu) return std::unexpected(vcpu.error());
    if (auto r = vcpu->set_cpuid(table); !r) return std::unexpected(r.error());
    auto sregs = vcpu->get_sregs();
    if (!sregs) return std::unexpected(sregs.error());
    x86::setup_long_mode(*sregs, {.cr3 = kPml4, .gdt_base = kGdt, .tss_base = kTss, .user_mode = true});
    sregs->cr4 = (sregs->cr4 & ~x86::cr4::kOSXSAVE) | x86::cr4_promised_by(table);
    if (auto r = vcpu->set_sregs(*sregs); !r) return std::unexpected(r.error());
    kvm_regs regs{};
    regs.rip = kCode;
    regs.rsp = kStackTop;
    regs.rflags = x86::rflags::kReserved1;
    if (auto r = vcpu->set_regs(regs); !r) return std::unexpected(r.error());

    uint32_t out[4];
    for (int got = 0, runs = 0; got < 4;) {
        if (++runs > 16) return fail("cpuid probe: the guest did not write its answers", EIO);
        if (auto r = vcpu->run(); !r) return std::unexpected(r.error());
        const kvm_run* run = vcpu->run_state();
        if (run->exit_reason == KVM_EXIT_INTR) continue;
        if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write || run->mmio.len != 4 ||
            run->mmio.phys_addr != kOut + 4u * static_cast<unsigned>(got))
            return fail("cpuid probe: unexpected exit " + std::to_string(run->exit_reason), EIO);
        std::memcpy(&out[got++], run->mmio.data, 4);
    }
    return CpuidRegs{out[0], out[1], out[2], out[3]};
}

Result<bool> cpuid_traps(const kvm::System& sys, const std::vector<kvm_cpuid_entry2>& table) {
    constexpr uint32_t kBrand = 0x80000002;
    std::vector<kvm_cpuid_entry2> planted = table;
    kvm_cpuid_entry2* e = nullptr;
    for (auto& entry : planted)
        if (entry.function == kBrand) e = &entry;
    if (!e) {
        if (planted.size() >= x86::kMaxKvmCpuidEntries) return fail("cpuid probe: the table is full", EINVAL);
        kvm_cpuid_entry2 brand{};
        brand.function = kBrand;
        planted.push_back(brand);
        e = &planted.back();
    }
    // The CPU's own answer is a brand string's first four characters: never
    // this, which has bytes no brand string holds.
    e->eax = 0x01fe02fd;
    auto regs = cpuid_in_guest(sys, planted, kBrand, 0);
    if (!regs) return std::unexpected(regs.error());
    return regs->eax == e->eax;
}

bool cpuid_traps_cached(const kvm::System& sys, const std::vector<kvm_cpuid_entry2>& table, const std::string& path) {
    if (!path.empty()) {
        const std::string known = read_small_file(path, 8);
        if (known == "1" || known == "0") return known == "1";
    }
    auto traps = cpuid_traps(sys, table);
    if (!traps) return false;
    if (!path.empty() && make_dirs(cache_dir())) (void)write_file_atomic(path, *traps ? "1" : "0", 1);
    return *traps;
}

}  // namespace vessel::machine
