// The zero page, setup header and e820 table against the offsets in the
// kernel's Documentation/arch/x86/boot.rst and zero-page.rst, and the
// identity map the 64-bit boot protocol asks for.
#include "arch/x86/boot_params.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <vector>

namespace x86 = vessel::arch::x86;

TEST(BootParams, ZeroPageOffsetsMatchZeroPageRst) {
    EXPECT_EQ(sizeof(x86::BootParams), 4096u);
    EXPECT_EQ(offsetof(x86::BootParams, screen_info), 0x000u);
    EXPECT_EQ(offsetof(x86::BootParams, apm_bios_info), 0x040u);
    EXPECT_EQ(offsetof(x86::BootParams, tboot_addr), 0x058u);
    EXPECT_EQ(offsetof(x86::BootParams, ist_info), 0x060u);
    EXPECT_EQ(offsetof(x86::BootParams, acpi_rsdp_addr), 0x070u);
    EXPECT_EQ(offsetof(x86::BootParams, hd0_info), 0x080u);
    EXPECT_EQ(offsetof(x86::BootParams, olpc_ofw_header), 0x0b0u);
    EXPECT_EQ(offsetof(x86::BootParams, ext_ramdisk_image), 0x0c0u);
    EXPECT_EQ(offsetof(x86::BootParams, ext_ramdisk_size), 0x0c4u);
    EXPECT_EQ(offsetof(x86::BootParams, ext_cmd_line_ptr), 0x0c8u);
    EXPECT_EQ(offsetof(x86::BootParams, cc_blob_address), 0x13cu);
    EXPECT_EQ(offsetof(x86::BootParams, edid_info), 0x140u);
    EXPECT_EQ(offsetof(x86::BootParams, efi_info), 0x1c0u);
    EXPECT_EQ(offsetof(x86::BootParams, alt_mem_k), 0x1e0u);
    EXPECT_EQ(offsetof(x86::BootParams, scratch), 0x1e4u);
    EXPECT_EQ(offsetof(x86::BootParams, e820_entries), 0x1e8u);
    EXPECT_EQ(offsetof(x86::BootParams, eddbuf_entries), 0x1e9u);
    EXPECT_EQ(offsetof(x86::BootParams, edd_mbr_sig_buf_entries), 0x1eau);
    EXPECT_EQ(offsetof(x86::BootParams, kbd_status), 0x1ebu);
    EXPECT_EQ(offsetof(x86::BootParams, secure_boot), 0x1ecu);
    EXPECT_EQ(offsetof(x86::BootParams, sentinel), 0x1efu);
    EXPECT_EQ(offsetof(x86::BootParams, hdr), 0x1f1u);
    EXPECT_EQ(offsetof(x86::BootParams, edd_mbr_sig_buffer), 0x290u);
    EXPECT_EQ(offsetof(x86::BootParams, e820_table), 0x2d0u);
    EXPECT_EQ(offsetof(x86::BootParams, eddbuf), 0xd00u);
    EXPECT_EQ(sizeof(x86::E820Entry), 20u);
    EXPECT_EQ(x86::e820::kMaxEntries * sizeof(x86::E820Entry), 0xa00u);
}

// boot.rst gives offsets within the boot sector; the header starts at 0x1f1.
#define EXPECT_HDR(field, offset) \
    EXPECT_EQ(offsetof(x86::BootParams, hdr) + offsetof(x86::SetupHeader, field), size_t(offset)) << #field

TEST(BootParams, SetupHeaderOffsetsMatchBootRst) {
    EXPECT_HDR(setup_sects, 0x1f1);
    EXPECT_HDR(root_flags, 0x1f2);
    EXPECT_HDR(syssize, 0x1f4);
    EXPECT_HDR(vid_mode, 0x1fa);
    EXPECT_HDR(boot_flag, 0x1fe);
    EXPECT_HDR(jump, 0x200);
    EXPECT_HDR(header, 0x202);
    EXPECT_HDR(version, 0x206);
    EXPECT_HDR(type_of_loader, 0x210);
    EXPECT_HDR(loadflags, 0x211);
    EXPECT_HDR(code32_start, 0x214);
    EXPECT_HDR(ramdisk_image, 0x218);
    EXPECT_HDR(ramdisk_size, 0x21c);
    EXPECT_HDR(heap_end_ptr, 0x224);
    EXPECT_HDR(ext_loader_ver, 0x226);
    EXPECT_HDR(cmd_line_ptr, 0x228);
    EXPECT_HDR(initrd_addr_max, 0x22c);
    EXPECT_HDR(kernel_alignment, 0x230);
    EXPECT_HDR(relocatable_kernel, 0x234);
    EXPECT_HDR(min_alignment, 0x235);
    EXPECT_HDR(xloadflags, 0x236);
    EXPECT_HDR(cmdline_size, 0x238);
    EXPECT_HDR(hardware_subarch, 0x23c);
    EXPECT_HDR(hardware_subarch_data, 0x240);
    EXPECT_HDR(payload_offset, 0x248);
    EXPECT_HDR(payload_length, 0x24c);
    EXPECT_HDR(setup_data, 0x250);
    EXPECT_HDR(pref_address, 0x258);
    EXPECT_HDR(init_size, 0x260);
    EXPECT_HDR(handover_offset, 0x264);
    EXPECT_HDR(kernel_info_offset, 0x268);
}

TEST(BootParams, PvhStructuresMatchStartInfoH) {
    EXPECT_EQ(offsetof(x86::HvmStartInfo, modlist_paddr), 16u);
    EXPECT_EQ(offsetof(x86::HvmStartInfo, cmdline_paddr), 24u);
    EXPECT_EQ(offsetof(x86::HvmStartInfo, rsdp_paddr), 32u);
    EXPECT_EQ(offsetof(x86::HvmStartInfo, memmap_paddr), 40u);
    EXPECT_EQ(offsetof(x86::HvmStartInfo, memmap_entries), 48u);
    EXPECT_EQ(sizeof(x86::HvmMemmapEntry), 24u);
    EXPECT_EQ(sizeof(x86::HvmModlistEntry), 32u);
}

TEST(E820, KeepsEntriesSortedAndRejectsOverlaps) {
    x86::E820Map map;
    ASSERT_TRUE(map.add(0x100000, 0x1000000, x86::e820::kRam));
    ASSERT_TRUE(map.add(0, 0x9fc00, x86::e820::kRam));
    ASSERT_TRUE(map.add(0x9fc00, 0x400, x86::e820::kReserved));
    EXPECT_FALSE(map.add(0x9f000, 0x2000, x86::e820::kRam));  // overlaps both
    EXPECT_FALSE(map.add(0x200000, 0, x86::e820::kRam));      // empty
    EXPECT_FALSE(map.add(~0ull - 10, 100, x86::e820::kRam));  // wraps
    ASSERT_EQ(map.entries().size(), 3u);
    EXPECT_EQ(map.entries()[0].addr, 0u);
    EXPECT_EQ(map.entries()[1].addr, 0x9fc00u);
    EXPECT_EQ(map.entries()[1].type, x86::e820::kReserved);
    EXPECT_EQ(map.entries()[2].addr, 0x100000u);
}

TEST(E820, TableIsBounded) {
    x86::E820Map map;
    for (unsigned i = 0; i < x86::e820::kMaxEntries; ++i) ASSERT_TRUE(map.add(uint64_t(i) << 12, 0x1000, 1));
    EXPECT_FALSE(map.add(1ull << 40, 0x1000, 1));
}

TEST(BootParams, VmlinuxZeroPageCarriesTheProtocolFields) {
    std::vector<x86::E820Entry> e820 = {{0, 0x9fc00, 1}, {0x100000, 0x7f00000, 1}};
    x86::BootParamsSpec spec{
        .cmdline_addr = 0x20000, .cmdline_size = 42, .initrd_addr = 0x7000000, .initrd_size = 0x123456, .e820 = e820};
    auto bp = x86::build_boot_params(nullptr, spec);
    ASSERT_TRUE(bp) << bp.error().message;
    const auto* raw = reinterpret_cast<const uint8_t*>(&*bp);
    auto u16 = [&](size_t off) {
        uint16_t v;
        std::memcpy(&v, raw + off, 2);
        return v;
    };
    auto u32 = [&](size_t off) {
        uint32_t v;
        std::memcpy(&v, raw + off, 4);
        return v;
    };
    EXPECT_EQ(u16(0x1fe), 0xaa55);
    EXPECT_EQ(u32(0x202), 0x53726448u);  // "HdrS"
    EXPECT_EQ(raw[0x210], 0xff);         // type_of_loader: undefined
    EXPECT_TRUE(raw[0x211] & 0x01);      // LOADED_HIGH
    EXPECT_EQ(u32(0x228), 0x20000u);     // cmd_line_ptr
    EXPECT_EQ(u32(0x238), 42u);          // cmdline_size
    EXPECT_EQ(u32(0x218), 0x7000000u);   // ramdisk_image
    EXPECT_EQ(u32(0x21c), 0x123456u);    // ramdisk_size
    EXPECT_EQ(raw[0x1e8], 2);            // e820_entries
    uint64_t addr;
    std::memcpy(&addr, raw + 0x2d0 + 20, 8);
    EXPECT_EQ(addr, 0x100000u);
    EXPECT_EQ(u32(0x2d0 + 20 + 16), 1u);
}

TEST(BootParams, BzImageHeaderIsCopiedAndLoaderFieldsFilled) {
    x86::SetupHeader hdr{};
    hdr.setup_sects = 27;
    hdr.boot_flag = 0xaa55;
    hdr.header = x86::kHdrsMagic;
    hdr.version = 0x020f;
    hdr.init_size = 0x2000000;
    hdr.xloadflags = x86::xloadflags::kKernel64;
    auto bp = x86::build_boot_params(&hdr, {.cmdline_addr = 0x20000, .cmdline_size = 5});
    ASSERT_TRUE(bp);
    EXPECT_EQ(bp->hdr.setup_sects, 27);
    EXPECT_EQ(bp->hdr.init_size, 0x2000000u);
    EXPECT_EQ(bp->hdr.type_of_loader, 0xff);
    EXPECT_EQ(bp->hdr.cmd_line_ptr, 0x20000u);
}

TEST(BootParams, RefusesAddressesAbove4G) {
    EXPECT_FALSE(x86::build_boot_params(nullptr, {.cmdline_addr = 1ull << 32}));
    EXPECT_FALSE(x86::build_boot_params(nullptr, {.initrd_addr = 0xfffff000, .initrd_size = 0x2000}));
}

TEST(PageTables, IdentityMapsFirst4GiBWith2MiBPages) {
    std::vector<uint8_t> buf(x86::kIdentityTablePages * 4096);
    const uint64_t base = 0x9000;
    ASSERT_EQ(x86::build_identity_page_tables(buf, base), base);
    auto entry = [&](uint64_t table_gpa, unsigned index) {
        uint64_t v;
        std::memcpy(&v, buf.data() + (table_gpa - base) + index * 8, 8);
        return v;
    };
    // Walk the tables for a few addresses as the MMU would.
    for (uint64_t va : {0x0ull, 0x7000ull, 0x1000000ull, 0x3fe00000ull, 0x40000000ull, 0xfee00000ull, 0xffffffffull}) {
        uint64_t pml4e = entry(base, (va >> 39) & 511);
        ASSERT_EQ(pml4e & 3, 3u) << std::hex << va;
        uint64_t pdpte = entry(pml4e & ~0xfffull, (va >> 30) & 511);
        ASSERT_EQ(pdpte & 3, 3u) << std::hex << va;
        ASSERT_EQ(pdpte & 0x80, 0u);  // not a 1 GiB page
        uint64_t pde = entry(pdpte & ~0xfffull, (va >> 21) & 511);
        ASSERT_EQ(pde & 0x83, 0x83u) << std::hex << va;  // present, writable, 2 MiB
        EXPECT_EQ((pde & ~0x1fffffull & ((1ull << 52) - 1)) | (va & 0x1fffff), va);
    }
    EXPECT_EQ(entry(base, 1), 0u);  // nothing above 512 GiB
    EXPECT_EQ(x86::build_identity_page_tables(std::span<uint8_t>(buf.data(), 4096), base), 0u);
}
