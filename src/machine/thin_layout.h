// A thin VM's guest-physical layout below the page pool: the system pages
// the VMM builds (thin_vm.cc) and a restore checks (fuzz/ too).
#pragma once

#include <cstdint>

namespace vessel::machine {

// Guest-physical layout: page 0 unused; pages 1-4 hold the GDT, the IDT and
// its exception stubs with their stack (arch/x86/exceptions.h), and the TSS
// with a full I/O permission bitmap (identity-mapped, supervisor-only, so the
// guest cannot change them); everything above is the page pool.
//
// The bitmap is what lets a CPL3 `out dx, eax` with any DX (the syscall's
// third argument) exit to the VMM: PVM ignores RFLAGS.IOPL and checks the
// bitmap, and on VT-x/AMD-V an all-zero bitmap agrees with IOPL=3.
inline constexpr uint64_t kSystemBase = 0x1000;
inline constexpr uint64_t kGdtAddr = 0x1000;
inline constexpr uint64_t kIdtAddr = 0x1100;
inline constexpr uint64_t kExceptionStubsAddr = 0x1400;  // executable at CPL0: page 1 is not NX
inline constexpr uint64_t kExceptionStackTop = 0x2000;   // the TSS's RSP0, down into page 1
inline constexpr uint64_t kTssAddr = 0x2000;
inline constexpr uint64_t kTssSize = 0x68;  // 64-bit TSS without the bitmap
// One bit per port, all zero (allowed), plus a zero byte for the bits a
// 4-byte access at port 0xffff reaches past 65535.
inline constexpr uint64_t kIoBitmapSize = 65536 / 8 + 1;
inline constexpr uint32_t kTssLimit = kTssSize + kIoBitmapSize;  // includes the 0xff terminator byte
inline constexpr uint64_t kSystemEnd = 0x5000;
inline constexpr uint64_t kPoolStart = kSystemEnd;

}  // namespace vessel::machine
