// How a full machine boots Linux: the kernel (vmlinux or bzImage) and initrd
// loaded into guest RAM with what firmware would leave below 1 MiB (memory
// map, BIOS data area, MP table, the zero page or PVH's start info), and
// the boot vCPU's registers for the 64-bit or the PVH entry.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "kvm/kvm.h"
#include "machine/full_vm.h"
#include "memory/guest_memory.h"

namespace vessel::machine {

struct BootImage {
    uint64_t entry = 0;
    bool pvh = false;     // PVH's 32-bit entry, else Linux's 64-bit one
    std::string summary;  // "vmlinux, PVH entry at 0x..., 512 MiB, 2 vCPUs, initrd ..."
};

// Loads config.kernel and config.initrd into `mem` with `cmdline` (the
// final one, with the virtio-mmio entries). Errors name the file.
Result<BootImage> load_kernel(const FullVmConfig& config, const std::string& cmdline, memory::GuestMemory& mem);

// The boot vCPU's segment and general registers for `boot` (and the boot
// GDT in `mem`).
Result<> set_boot_registers(kvm::Vcpu& vcpu, memory::GuestMemory& mem, const BootImage& boot);

}  // namespace vessel::machine
