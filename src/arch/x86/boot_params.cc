#include "arch/x86/boot_params.h"

#include <algorithm>
#include <cstring>

namespace vessel::arch::x86 {

Result<> E820Map::add(uint64_t addr, uint64_t size, uint32_t type) {
    if (size == 0 || addr + size < addr) return fail("e820: invalid range", EINVAL);
    if (entries_.size() >= e820::kMaxEntries) return fail("e820: table full", ENOSPC);
    for (const auto& e : entries_)
        if (addr < e.addr + e.size && e.addr < addr + size) return fail("e820: overlapping ranges", EINVAL);
    entries_.push_back({addr, size, type});
    std::sort(entries_.begin(), entries_.end(), [](const E820Entry& a, const E820Entry& b) { return a.addr < b.addr; });
    return {};
}

Result<BootParams> build_boot_params(const SetupHeader* image_header, const BootParamsSpec& spec) {
    if (spec.e820.size() > e820::kMaxEntries) return fail("boot_params: too many e820 entries", EINVAL);
    if (spec.cmdline_addr >> 32 || spec.initrd_addr >> 32 || spec.initrd_size >> 32 ||
        (spec.initrd_size && spec.initrd_addr + spec.initrd_size > (1ull << 32)))
        return fail("boot_params: command line and initrd must lie below 4 GiB", EINVAL);

    BootParams bp;
    std::memset(&bp, 0, sizeof bp);
    if (image_header) {
        bp.hdr = *image_header;
    } else {
        bp.hdr.boot_flag = kBootFlag;
        bp.hdr.header = kHdrsMagic;
        bp.hdr.version = 0x020f;
        bp.hdr.kernel_alignment = 0x1000000;
        bp.hdr.xloadflags = xloadflags::kKernel64;
    }
    bp.hdr.type_of_loader = kLoaderTypeUndefined;
    bp.hdr.loadflags |= loadflags::kLoadedHigh | loadflags::kCanUseHeap;
    bp.hdr.heap_end_ptr = 0xfe00;  // the end of the real-mode setup heap, as GRUB sets it
    bp.hdr.cmd_line_ptr = static_cast<uint32_t>(spec.cmdline_addr);
    bp.hdr.cmdline_size = spec.cmdline_size;
    bp.hdr.ramdisk_image = static_cast<uint32_t>(spec.initrd_addr);
    bp.hdr.ramdisk_size = static_cast<uint32_t>(spec.initrd_size);
    bp.e820_entries = static_cast<uint8_t>(spec.e820.size());
    std::copy(spec.e820.begin(), spec.e820.end(), bp.e820_table);
    return bp;
}

uint64_t build_identity_page_tables(std::span<uint8_t> tables, uint64_t base) {
    constexpr uint64_t kPresent = 1, kWrite = 2, kHuge = 1ull << 7;
    if (tables.size() < kIdentityTablePages * 4096ull) return 0;
    auto entry = [&](unsigned page, unsigned index, uint64_t value) {
        std::memcpy(tables.data() + page * 4096 + index * 8, &value, 8);
    };
    entry(0, 0, (base + 4096) | kPresent | kWrite);  // PML4[0] -> PDPT
    for (unsigned g = 0; g < kIdentityMapGiB; ++g) {
        entry(1, g, (base + (2 + g) * 4096) | kPresent | kWrite);  // PDPT[g] -> PD
        for (unsigned i = 0; i < 512; ++i)
            entry(2 + g, i, ((uint64_t(g) << 30) + (uint64_t(i) << 21)) | kPresent | kWrite | kHuge);
    }
    return base;
}

}  // namespace vessel::arch::x86
