#include "machine/full_boot.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <span>

#include "arch/x86/boot_params.h"
#include "arch/x86/mptable.h"
#include "arch/x86/x86.h"
#include "base/text.h"
#include "loader/linux_loader.h"

namespace vessel::machine {
namespace {

namespace x86 = arch::x86;

// Guest-physical layout below 1 MiB (the kernel's own data starts at 1 MiB;
// everything here is what firmware would have left behind).
constexpr uint64_t kBdaEbdaSegment = 0x40e;    // BIOS data area: EBDA segment
constexpr uint64_t kBdaBaseMemoryKiB = 0x413;  // BIOS data area: base memory size
constexpr uint64_t kGdtAddr = 0x500;           // boot GDT (Linux's __BOOT_CS/__BOOT_DS)
constexpr uint64_t kTssAddr = 0x600;           // an empty TSS for the initial TR
constexpr uint64_t kStartInfoAddr = 0x6000;    // PVH hvm_start_info
constexpr uint64_t kPvhMemmapAddr = 0x6040;    //   its memory map
constexpr uint64_t kPvhModlistAddr = 0x6e00;   //   its module list (the initrd)
constexpr uint64_t kZeroPageAddr = 0x7000;     // boot_params
constexpr uint64_t kBootStackTop = 0x8ff0;
constexpr uint64_t kPageTablesAddr = 0x9000;  // identity map for the 64-bit entry
constexpr uint64_t kCmdlineAddr = 0x20000;
constexpr uint64_t kCmdlineMax = 0x10000;
constexpr uint64_t kEbdaStart = 0x9fc00;  // MP table lives at the start of the EBDA
constexpr uint64_t kBiosRomStart = 0xf0000;
constexpr uint64_t kHighMemStart = 0x100000;

}  // namespace

Result<BootImage> load_kernel(const FullVmConfig& config, const std::string& cmdline, memory::GuestMemory& guest) {
    memory::GuestMemory* mem = &guest;
    uint64_t entry = 0;
    bool pvh = false;
    auto kernel_file = loader::map_file(config.kernel);
    if (!kernel_file) return std::unexpected(kernel_file.error());
    std::span<const uint8_t> kbytes(kernel_file->data(), kernel_file->size());
    auto format = loader::detect_kernel_format(kbytes);
    if (!format) return fail(config.kernel + ": " + format.error().message, ENOEXEC);

    Mapping initrd_file;
    if (!config.initrd.empty()) {
        auto f = loader::map_file(config.initrd);
        if (!f) return std::unexpected(f.error());
        initrd_file = std::move(*f);
    }

    const uint64_t ram_end = mem->size();
    uint64_t kernel_end = 0;
    uint32_t cmdline_max = 2047;  // COMMAND_LINE_SIZE - 1 on x86
    std::optional<x86::SetupHeader> image_header;
    std::string how;
    if (*format == loader::KernelFormat::kVmlinux) {
        auto image = loader::parse_vmlinux(kbytes);
        if (!image) return fail(config.kernel + ": " + image.error().message, ENOEXEC);
        if (config.entry == BootEntry::kPvh && !image->pvh_entry)
            return fail(config.kernel + ": no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY); use --boot-entry linux64",
                        ENOEXEC);
        if (auto r = loader::load_vmlinux(*mem, kbytes, *image, ram_end); !r)
            return fail(config.kernel + ": " + r.error().message, r.error().sys_errno);
        pvh = image->pvh_entry && config.entry != BootEntry::kLinux64;
        entry = pvh ? *image->pvh_entry : image->entry64;
        kernel_end = image->highest;
        how = pvh ? "vmlinux, PVH entry" : "vmlinux, 64-bit entry";
    } else {
        if (config.entry == BootEntry::kPvh)
            return fail(config.kernel + ": a bzImage has no PVH entry; use a vmlinux", ENOEXEC);
        auto image = loader::parse_bzimage(kbytes);
        if (!image) return fail(config.kernel + ": " + image.error().message, ENOEXEC);
        if (auto r = loader::load_bzimage(*mem, *image, ram_end); !r)
            return fail(config.kernel + ": " + r.error().message, r.error().sys_errno);
        pvh = false;
        entry = image->load_address + loader::kBzImage64BitEntryOffset;
        kernel_end = image->load_address + image->memory_needed;
        cmdline_max = image->cmdline_max;
        image_header = image->header;
        how = "bzImage, 64-bit entry";
    }

    if (cmdline.size() > cmdline_max || cmdline.size() >= kCmdlineMax)
        return fail("kernel command line is " + std::to_string(cmdline.size()) + " bytes; this kernel takes at most " +
                        std::to_string(cmdline_max),
                    EINVAL);
    std::memcpy(mem->host(kCmdlineAddr, cmdline.size() + 1), cmdline.c_str(), cmdline.size() + 1);

    uint64_t initrd_addr = 0, initrd_size = initrd_file.size();
    if (initrd_size) {
        uint64_t highest = ram_end;
        if (image_header && image_header->initrd_addr_max)
            highest = std::min<uint64_t>(highest, uint64_t(image_header->initrd_addr_max) + 1);
        auto addr =
            loader::load_initrd(*mem, std::span<const uint8_t>(initrd_file.data(), initrd_size), kernel_end, highest);
        if (!addr) return fail(config.initrd + ": " + addr.error().message, ENOMEM);
        initrd_addr = *addr;
    }

    // The memory map: low RAM up to the EBDA, the EBDA and BIOS ROM reserved,
    // RAM from 1 MiB.
    x86::E820Map e820;
    if (auto r = e820.add(0, kEbdaStart, x86::e820::kRam); !r) return std::unexpected(r.error());
    if (auto r = e820.add(kEbdaStart, 0xa0000 - kEbdaStart, x86::e820::kReserved); !r)
        return std::unexpected(r.error());
    if (auto r = e820.add(kBiosRomStart, kHighMemStart - kBiosRomStart, x86::e820::kReserved); !r)
        return std::unexpected(r.error());
    if (auto r = e820.add(kHighMemStart, ram_end - kHighMemStart, x86::e820::kRam); !r)
        return std::unexpected(r.error());

    // What firmware leaves: the BDA pointing at the EBDA, and the MP table in it.
    uint16_t ebda_segment = kEbdaStart >> 4, base_kib = kEbdaStart >> 10;
    std::memcpy(mem->host(kBdaEbdaSegment, 2), &ebda_segment, 2);
    std::memcpy(mem->host(kBdaBaseMemoryKiB, 2), &base_kib, 2);
    auto mp = x86::build_mptable(kEbdaStart, config.cpus);
    if (!mp) return std::unexpected(mp.error());
    if (mp->size() > 0xa0000 - kEbdaStart) return fail("MP table does not fit in the EBDA", EINVAL);
    std::memcpy(mem->host(kEbdaStart, mp->size()), mp->data(), mp->size());

    if (pvh) {
        x86::HvmStartInfo si{};
        si.magic = x86::kHvmStartMagic;
        si.version = 1;
        si.cmdline_paddr = kCmdlineAddr;
        si.memmap_paddr = kPvhMemmapAddr;
        si.memmap_entries = static_cast<uint32_t>(e820.entries().size());
        for (size_t i = 0; i < e820.entries().size(); ++i) {
            const auto& e = e820.entries()[i];
            x86::HvmMemmapEntry m{e.addr, e.size, e.type, 0};
            std::memcpy(mem->host(kPvhMemmapAddr + i * sizeof m, sizeof m), &m, sizeof m);
        }
        if (initrd_size) {
            x86::HvmModlistEntry mod{initrd_addr, initrd_size, 0, 0};
            std::memcpy(mem->host(kPvhModlistAddr, sizeof mod), &mod, sizeof mod);
            si.nr_modules = 1;
            si.modlist_paddr = kPvhModlistAddr;
        }
        std::memcpy(mem->host(kStartInfoAddr, sizeof si), &si, sizeof si);
    } else {
        x86::BootParamsSpec spec;
        spec.cmdline_addr = kCmdlineAddr;
        spec.cmdline_size = static_cast<uint32_t>(cmdline.size());
        spec.initrd_addr = initrd_addr;
        spec.initrd_size = initrd_size;
        spec.e820 = e820.entries();
        auto bp = x86::build_boot_params(image_header ? &*image_header : nullptr, spec);
        if (!bp) return std::unexpected(bp.error());
        std::memcpy(mem->host(kZeroPageAddr, sizeof *bp), &*bp, sizeof *bp);
        x86::build_identity_page_tables(mem->span(kPageTablesAddr, x86::kIdentityTablePages * memory::kPageSize),
                                        kPageTablesAddr);
    }

    return BootImage{
        entry, pvh,
        how + " at " + hex(entry) + ", " + std::to_string(mem->size() >> 20) + " MiB, " + std::to_string(config.cpus) +
            " vCPU" + (config.cpus > 1 ? "s" : "") +
            (initrd_size ? ", initrd " + std::to_string(initrd_size >> 10) + " KiB at " + hex(initrd_addr) : "")};
}

Result<> set_boot_registers(kvm::Vcpu& vcpu, memory::GuestMemory& guest, const BootImage& boot) {
    memory::GuestMemory* mem = &guest;
    const bool pvh = boot.pvh;
    auto sregs = vcpu.get_sregs();
    if (!sregs) return std::unexpected(sregs.error());
    kvm_regs regs{};
    regs.rflags = x86::rflags::kReserved1;
    regs.rip = boot.entry;

    if (pvh) {
        // PVH: 32-bit protected mode, paging off; flat CS/DS; a 32-bit busy
        // TSS; EBX = hvm_start_info.
        uint64_t* gdt = reinterpret_cast<uint64_t*>(mem->host(kGdtAddr, 4 * 8));
        gdt[0] = 0;
        // code: ring 0, exec/read, accessed; 4K, 32-bit. data: read/write, accessed. 32-bit busy TSS.
        gdt[1] = x86::gdt_descriptor(0, 0xfffff, 0xb, true, 0, false, true, true);
        gdt[2] = x86::gdt_descriptor(0, 0xfffff, 0x3, true, 0, false, true, true);
        gdt[3] = x86::gdt_descriptor(static_cast<uint32_t>(kTssAddr), 0x67, 0xb, false, 0, false, false, false);
        sregs->cs = x86::flat_segment(0x08, 0xb, 0, false);
        sregs->ds = sregs->es = sregs->fs = sregs->gs = sregs->ss = x86::flat_segment(0x10, 0x3, 0, false);
        sregs->tr = {};
        sregs->tr.base = kTssAddr;
        sregs->tr.limit = 0x67;
        sregs->tr.selector = 0x18;
        sregs->tr.type = 0xb;
        sregs->tr.present = 1;
        sregs->ldt = {};
        sregs->ldt.type = 0x2;
        sregs->ldt.present = 1;
        sregs->ldt.limit = 0xffff;
        sregs->gdt.base = kGdtAddr;
        sregs->gdt.limit = 4 * 8 - 1;
        sregs->idt.base = 0;
        sregs->idt.limit = 0;
        sregs->cr0 = x86::cr0::kPE | x86::cr0::kET;
        sregs->cr3 = 0;
        sregs->cr4 = 0;
        sregs->efer = 0;
        regs.rbx = kStartInfoAddr;
    } else {
        // The 64-bit boot protocol: long mode with an identity map, __BOOT_CS
        // = 0x10 and __BOOT_DS = 0x18, interrupts off, RSI = boot_params.
        x86::build_gdt(reinterpret_cast<uint64_t*>(mem->host(kGdtAddr, x86::kGdtEntries * 8)), kTssAddr, 0x67);
        x86::setup_long_mode(*sregs, {.cr3 = kPageTablesAddr,
                                      .gdt_base = kGdtAddr,
                                      .tss_base = kTssAddr,
                                      .tss_limit = 0x67,
                                      .user_mode = false});
        sregs->cr4 = x86::cr4::kPAE;
        sregs->efer = x86::efer::kLME | x86::efer::kLMA;
        regs.rsi = kZeroPageAddr;
        regs.rsp = regs.rbp = kBootStackTop;
    }
    if (auto r = vcpu.set_sregs(*sregs); !r) return std::unexpected(r.error());
    if (auto r = vcpu.set_regs(regs); !r) return std::unexpected(r.error());
    return {};
}

}  // namespace vessel::machine
