// The Linux kernel loader for full machines: parses and validates a vmlinux
// ELF (with its PVH entry note) or a bzImage (setup header, 64-bit entry),
// and copies the kernel and an initrd into guest memory.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "arch/x86/boot_params.h"
#include "base/mapping.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace vessel::loader {

// Xen's ELF note type for the 32-bit PVH entry point (xen/include/public/elfnote.h).
inline constexpr uint32_t kXenElfNotePhys32Entry = 18;
// Where a relocatable bzImage's protected-mode part goes: Linux's default
// LOAD_PHYSICAL_ADDR, and where GRUB and QEMU put it.
inline constexpr uint64_t kBzImageLoadAddress = 0x1000000;
// Offset of startup_64 from the start of a bzImage's protected-mode code.
inline constexpr uint64_t kBzImage64BitEntryOffset = 0x200;

struct KernelSegment {
    uint64_t paddr;
    uint64_t offset;  // in the file
    uint64_t filesz;
    uint64_t memsz;
};

struct Vmlinux {
    uint64_t entry64 = 0;                 // physical address of startup_64
    std::optional<uint32_t> pvh_entry;    // from the XEN_ELFNOTE_PHYS32_ENTRY note
    std::vector<KernelSegment> segments;  // PT_LOAD, by physical address
    uint64_t lowest = 0, highest = 0;     // physical span of all segments
};

struct BzImage {
    arch::x86::SetupHeader header{};
    uint64_t setup_size = 0;                  // bytes of real-mode code before the kernel
    std::span<const uint8_t> protected_mode;  // the part loaded at `load_address`
    uint64_t load_address = 0;
    uint64_t memory_needed = 0;  // from load_address: max(init_size, file part)
    uint32_t cmdline_max = 0;    // longest command line the kernel takes
};

enum class KernelFormat { kVmlinux, kBzImage };

// By content, not by name: ELF magic or the setup header's "HdrS".
Result<KernelFormat> detect_kernel_format(std::span<const uint8_t> file);

Result<Vmlinux> parse_vmlinux(std::span<const uint8_t> file);
Result<BzImage> parse_bzimage(std::span<const uint8_t> file);

// Copies the segments (zeroing their BSS). Everything must lie in
// [0x100000, ram_end).
Result<> load_vmlinux(memory::GuestMemory& mem, std::span<const uint8_t> file, const Vmlinux& image, uint64_t ram_end);
Result<> load_bzimage(memory::GuestMemory& mem, const BzImage& image, uint64_t ram_end);

// Places the initrd as high as possible: page-aligned, ending at or below
// `highest_end`, starting at or above `lowest`. Returns its address.
Result<uint64_t> load_initrd(memory::GuestMemory& mem, std::span<const uint8_t> initrd, uint64_t lowest,
                             uint64_t highest_end);

// A read-only mapping of a whole regular file; empty files are refused.
Result<Mapping> map_file(const std::string& path);

}  // namespace vessel::loader
