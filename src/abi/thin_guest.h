/* The thin guest's ABI with the VMM, in one place: the layout of the pages
 * the VMM owns below mmap_min_addr, shared by the guest-side entry code
 * (thin/guest_entry.S), the VMM's handle on it (thin/guest_entry.h) and the
 * rewriter's stubs (loader/rewriter.h). Plain #defines for the assembler;
 * the C++ names follow at the end.
 *
 * Guest virtual addresses below Linux's mmap_min_addr (0x10000) belong to the
 * VMM; the guest cannot map, unmap or protect them.
 *   0x0000  unmapped, so NULL pointers fault
 *   0x1000-0x4fff  GDT and TSS (supervisor only; see machine/thin_layout.h)
 *   0x5000  the entry code, guest_entry.S (user, read+exec)
 *   0x6000  the shared page: fields and the random pool below, then the
 *           entry code's stack
 *           (user, read+write, no exec)
 *   0x7000  per-number counts of calls answered in the guest (user, read+write)
 *   0x8000  the host's CPUID answers, for rewritten `cpuid` sites (user,
 *           read only, no exec): a 32-bit count at 0, the answers from
 *           GUEST_CPUID_ANSWERS, 24 bytes each (leaf, subleaf or
 *           0xffffffff for any, eax, ebx, ecx, edx; arch/x86/host_cpuid.h)
 */
#ifndef VESSEL_ABI_THIN_GUEST_H
#define VESSEL_ABI_THIN_GUEST_H

#define GUEST_ENTRY_VA 0x5000
#define GUEST_SHARED_VA 0x6000
#define GUEST_COUNTS_VA 0x7000
#define GUEST_COUNTED 512 /* counts kept for numbers below this */
#define GUEST_CPUID_VA 0x8000
#define GUEST_CPUID_ANSWERS 0x10
#define GUEST_CPUID_MAX ((0x1000 - GUEST_CPUID_ANSWERS) / 24)

/* Shared page, byte offsets of 64-bit fields. The guest may write any of
 * them; the VMM checks each value it reads. */
#define SH_ENABLED 0x00  /* 0: every call exits to the VMM (--trace-syscalls) */
#define SH_UID 0x08      /* getuid/geteuid */
#define SH_GID 0x10      /* getgid/getegid */
#define SH_PID 0x18      /* getpid/gettid */
#define SH_WIN_FD 0x20   /* descriptor whose read-ahead window is live, or -1 */
#define SH_WIN_VA 0x28   /* guest address of the window buffer */
#define SH_WIN_LEN 0x30  /* bytes in the window */
#define SH_WIN_POS 0x38  /* bytes of it the guest has consumed */
#define SH_SAFE_LO 0x40  /* a read buffer inside [lo, hi) is known to be */
#define SH_SAFE_HI 0x48  /*   mapped and writable */
#define SH_SAVE_RDI 0x50 /* scratch for the entry code */
#define SH_SAVE_RSI 0x58
#define SH_SAVE_RSP 0x60
#define SH_SAVE_RCX 0x68  /* the return address (the CPUID entry's too) */
#define SH_HANDLER 0x70   /* the entry code's address: stubs jump through it */
#define SH_BRK_START 0x78 /* the heap: brk queries are answered from SH_BRK, */
#define SH_BRK 0x80       /*   and the guest may move SH_BRK up to SH_BRK_LIMIT, */
#define SH_CLK_VALID 0x88 /* the clock: ns = base + ((rdtsc - tsc) * mult) >> 32 */
#define SH_CLK_TSC 0x90
#define SH_CLK_MULT 0x98
#define SH_CLK_MONO 0xa0 /* CLOCK_MONOTONIC base, ns */
#define SH_CLK_REAL 0xa8 /* CLOCK_REALTIME base, ns since the epoch */
#define SH_STACK_LO 0xb0 /* the stack mapping, known writable: where clock */
#define SH_STACK_HI 0xb8 /*   results may be stored without asking */
#define SH_SAVE_RDX 0xc0
#define SH_FSGSBASE 0xc8       /* 1: CR4.FSGSBASE is on, wrfsbase serves ARCH_SET_FS */
#define SH_TID_ADDRESS 0xd0    /* set_tid_address's pointer (the guest's to set) */
#define SH_RLIM_STACK_CUR 0xd8 /* RLIMIT_STACK as the VMM answers it */
#define SH_RLIM_STACK_MAX 0xe0
#define SH_BRK_LIMIT 0xe8      /*   the end of the heap pages mapped already */
#define SH_RAND_POS 0xf0       /* bytes of the random pool the guest has used */
#define SH_DATA_LO 0xf8        /* the program's writable data mapping: where */
#define SH_DATA_HI 0x100       /*   getrandom may store too, besides stack and heap */
#define SH_CPUID_HANDLER 0x108 /* the entry code's CPUID: cpuid stubs jump through it */
#define SH_RAND_POOL 0x110     /* GUEST_RAND_POOL bytes from the host's getrandom */
#define GUEST_RAND_POOL 1024
#define SH_SELF_EXE 0x510   /* GUEST_SELF_EXE addresses of the program's own read-only */
#define GUEST_SELF_EXE 4    /*   "/proc/self/exe" strings (0: none) */
#define SH_STACK_TOP 0x1000 /* the entry code's stack: the rest of the page */

#ifdef __cplusplus
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vessel::abi {

// Where the rewriter's stubs jump: guest addresses below 2 GiB holding the
// entry code's address (for `syscall` sites) and its CPUID's (`cpuid` sites).
inline constexpr uint64_t kGuestHandlerPointer = GUEST_SHARED_VA + SH_HANDLER;
inline constexpr uint64_t kGuestCpuidPointer = GUEST_SHARED_VA + SH_CPUID_HANDLER;
// The name of the stub area's mapping: the guest-side entry finds the
// program's data mapping, which ends where the stub area begins, by it.
inline constexpr std::string_view kStubAreaName = "[vessel stubs]";
// How many of the program's own read-only "/proc/self/exe" strings the
// shared page can name.
inline constexpr size_t kSelfExeStrings = GUEST_SELF_EXE;

}  // namespace vessel::abi
#endif

#endif
