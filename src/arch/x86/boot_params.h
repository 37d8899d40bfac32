// The Linux x86 boot protocol's data structures: the setup header, the zero
// page (struct boot_params) and the e820 memory map, laid out byte for byte as
// Documentation/arch/x86/boot.rst and zero-page.rst describe them; and the
// PVH start info (xen/include/public/arch-x86/hvm/start_info.h).
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vessel::arch::x86 {

// ---- e820 ----------------------------------------------------------------

namespace e820 {
inline constexpr uint32_t kRam = 1, kReserved = 2, kAcpi = 3, kNvs = 4, kUnusable = 5;
inline constexpr unsigned kMaxEntries = 128;  // E820_MAX_ENTRIES_ZEROPAGE
}  // namespace e820

struct [[gnu::packed]] E820Entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
};
static_assert(sizeof(E820Entry) == 20);

// A memory map under construction: entries are kept sorted and must not overlap.
class E820Map {
public:
    // Fails on an empty, overflowing or overlapping range, or a full table.
    Result<> add(uint64_t addr, uint64_t size, uint32_t type);
    const std::vector<E820Entry>& entries() const { return entries_; }

private:
    std::vector<E820Entry> entries_;
};

// ---- setup header (boot.rst, "The Real-Mode Kernel Header") ---------------

namespace loadflags {
inline constexpr uint8_t kLoadedHigh = 1 << 0, kKaslrFlag = 1 << 1, kQuietFlag = 1 << 5, kKeepSegments = 1 << 6,
                         kCanUseHeap = 1 << 7;
}
namespace xloadflags {
inline constexpr uint16_t kKernel64 = 1 << 0, kCanBeLoadedAbove4G = 1 << 1, kEfiHandover32 = 1 << 2,
                          kEfiHandover64 = 1 << 3, kEfiKexec = 1 << 4;
}
inline constexpr uint16_t kBootFlag = 0xaa55;
inline constexpr uint32_t kHdrsMagic = 0x53726448;  // "HdrS"
inline constexpr uint8_t kLoaderTypeUndefined = 0xff;
inline constexpr uint64_t kSetupHeaderOffset = 0x1f1;

struct [[gnu::packed]] SetupHeader {
    uint8_t setup_sects;             // 0x1f1
    uint16_t root_flags;             // 0x1f2
    uint32_t syssize;                // 0x1f4
    uint16_t ram_size;               // 0x1f8
    uint16_t vid_mode;               // 0x1fa
    uint16_t root_dev;               // 0x1fc
    uint16_t boot_flag;              // 0x1fe
    uint16_t jump;                   // 0x200
    uint32_t header;                 // 0x202
    uint16_t version;                // 0x206
    uint32_t realmode_swtch;         // 0x208
    uint16_t start_sys_seg;          // 0x20c
    uint16_t kernel_version;         // 0x20e
    uint8_t type_of_loader;          // 0x210
    uint8_t loadflags;               // 0x211
    uint16_t setup_move_size;        // 0x212
    uint32_t code32_start;           // 0x214
    uint32_t ramdisk_image;          // 0x218
    uint32_t ramdisk_size;           // 0x21c
    uint32_t bootsect_kludge;        // 0x220
    uint16_t heap_end_ptr;           // 0x224
    uint8_t ext_loader_ver;          // 0x226
    uint8_t ext_loader_type;         // 0x227
    uint32_t cmd_line_ptr;           // 0x228
    uint32_t initrd_addr_max;        // 0x22c
    uint32_t kernel_alignment;       // 0x230
    uint8_t relocatable_kernel;      // 0x234
    uint8_t min_alignment;           // 0x235
    uint16_t xloadflags;             // 0x236
    uint32_t cmdline_size;           // 0x238
    uint32_t hardware_subarch;       // 0x23c
    uint64_t hardware_subarch_data;  // 0x240
    uint32_t payload_offset;         // 0x248
    uint32_t payload_length;         // 0x24c
    uint64_t setup_data;             // 0x250
    uint64_t pref_address;           // 0x258
    uint32_t init_size;              // 0x260
    uint32_t handover_offset;        // 0x264
    uint32_t kernel_info_offset;     // 0x268
};
static_assert(sizeof(SetupHeader) == 0x26c - 0x1f1);

// ---- zero page (zero-page.rst) --------------------------------------------

struct [[gnu::packed]] BootParams {
    uint8_t screen_info[0x40];                // 0x000
    uint8_t apm_bios_info[0x14];              // 0x040
    uint8_t pad1[4];                          // 0x054
    uint64_t tboot_addr;                      // 0x058
    uint8_t ist_info[0x10];                   // 0x060
    uint64_t acpi_rsdp_addr;                  // 0x070
    uint8_t pad2[8];                          // 0x078
    uint8_t hd0_info[0x10];                   // 0x080
    uint8_t hd1_info[0x10];                   // 0x090
    uint8_t sys_desc_table[0x10];             // 0x0a0
    uint8_t olpc_ofw_header[0x10];            // 0x0b0
    uint32_t ext_ramdisk_image;               // 0x0c0
    uint32_t ext_ramdisk_size;                // 0x0c4
    uint32_t ext_cmd_line_ptr;                // 0x0c8
    uint8_t pad3[0x70];                       // 0x0cc
    uint32_t cc_blob_address;                 // 0x13c
    uint8_t edid_info[0x80];                  // 0x140
    uint8_t efi_info[0x20];                   // 0x1c0
    uint32_t alt_mem_k;                       // 0x1e0
    uint32_t scratch;                         // 0x1e4
    uint8_t e820_entries;                     // 0x1e8
    uint8_t eddbuf_entries;                   // 0x1e9
    uint8_t edd_mbr_sig_buf_entries;          // 0x1ea
    uint8_t kbd_status;                       // 0x1eb
    uint8_t secure_boot;                      // 0x1ec
    uint8_t pad5[2];                          // 0x1ed
    uint8_t sentinel;                         // 0x1ef
    uint8_t pad6[1];                          // 0x1f0
    SetupHeader hdr;                          // 0x1f1
    uint8_t pad7[0x290 - 0x26c];              // 0x26c
    uint32_t edd_mbr_sig_buffer[16];          // 0x290
    E820Entry e820_table[e820::kMaxEntries];  // 0x2d0
    uint8_t pad8[48];                         // 0xcd0
    uint8_t eddbuf[0x1ec];                    // 0xd00
    uint8_t pad9[276];                        // 0xeec
};
static_assert(sizeof(BootParams) == 4096);

// The parts of the zero page a loader fills in for the 64-bit entry.
struct BootParamsSpec {
    uint64_t cmdline_addr = 0;
    uint32_t cmdline_size = 0;  // bytes, without the NUL
    uint64_t initrd_addr = 0;
    uint64_t initrd_size = 0;
    std::span<const E820Entry> e820{};
};

// Builds a zero page. `image_header` is the setup header of a bzImage (copied
// in as the protocol asks) or nullptr for a vmlinux, which gets the minimal
// header the kernel's 64-bit entry checks.
Result<BootParams> build_boot_params(const SetupHeader* image_header, const BootParamsSpec& spec);

// ---- PVH (hvm_start_info) -------------------------------------------------

inline constexpr uint32_t kHvmStartMagic = 0x336ec578;

struct HvmStartInfo {
    uint32_t magic;
    uint32_t version;  // 1: has the memory map fields
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};
static_assert(sizeof(HvmStartInfo) == 56);

struct HvmModlistEntry {
    uint64_t paddr;
    uint64_t size;
    uint64_t cmdline_paddr;
    uint64_t reserved;
};
static_assert(sizeof(HvmModlistEntry) == 32);

struct HvmMemmapEntry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};
static_assert(sizeof(HvmMemmapEntry) == 24);

// ---- identity-mapped page tables for the 64-bit entry ---------------------

// Number of 4 KiB pages build_identity_page_tables writes: PML4, PDPT and
// one page directory per GiB.
inline constexpr unsigned kIdentityMapGiB = 4;
inline constexpr unsigned kIdentityTablePages = 2 + kIdentityMapGiB;

// Writes page tables at `tables` (guest-physical `base`, kIdentityTablePages
// pages, zeroed by the caller) that identity-map the first 4 GiB with 2 MiB
// pages, as the 64-bit boot protocol requires. Returns CR3 (0 when `tables` is too small).
uint64_t build_identity_page_tables(std::span<uint8_t> tables, uint64_t base);

}  // namespace vessel::arch::x86
