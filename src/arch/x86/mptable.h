// The Intel MultiProcessor Specification 1.4 tables: how a kernel without
// ACPI learns the CPUs, the I/O APIC and the ISA interrupt routing.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace vessel::arch::x86 {

inline constexpr uint64_t kIoApicAddress = 0xfec00000;
inline constexpr uint64_t kLocalApicAddress = 0xfee00000;
inline constexpr unsigned kIoApicPins = 24;
// The MP spec limits APIC IDs to 8 bits; 0xff is the broadcast ID and the
// I/O APIC takes the ID after the last CPU.
inline constexpr unsigned kMaxMpCpus = 254;

// The bytes of the floating pointer structure followed by the configuration
// table, to be copied to guest-physical `addr` (16-byte aligned, inside the
// first KiB of the EBDA, the last KiB of base memory or the BIOS ROM area,
// where Linux's smp_scan_config looks).
Result<std::vector<uint8_t>> build_mptable(uint64_t addr, unsigned cpus);

}  // namespace vessel::arch::x86
