/* The guest-side system-call entry of a thin VM. It runs in guest user mode
 * at GUEST_ENTRY_VA; the VMM copies these bytes there (guest_entry.cc).
 *
 * A rewritten site jumps to its stub (loader/rewriter.h), which jumps here
 * with:
 *   rax = system-call number, rdi rsi rdx r10 r8 r9 = arguments,
 *   rcx = the address after the site (as `syscall` leaves RCX).
 * It answers a few calls from the shared page without leaving the guest and
 * sends every other one to the VMM with `out %eax, (%dx)`, which exits to the
 * VMM like the sites rewritten to `out` directly. As after `syscall`, RAX
 * holds the result, RCX the return address and R11 the flags; every other
 * register and the flags are kept. The guest's stack is never touched (a red
 * zone below RSP stays intact): the code runs on its own stack at the end
 * of the shared page. Rewritten `cpuid` sites enter at vessel_guest_cpuid
 * (at the end) instead.
 *
 * Position-independent: the shared page and the counts are addressed
 * relative to RIP. Assembled into .rodata: it never runs on the host. */
#include "abi/thin_guest.h"

#define SH(field) (.Lbase + (GUEST_SHARED_VA - GUEST_ENTRY_VA) + field)(%rip)
#define COUNTS (.Lbase + (GUEST_COUNTS_VA - GUEST_ENTRY_VA))(%rip)
#define CPUID(offset) (.Lbase + (GUEST_CPUID_VA - GUEST_ENTRY_VA) + offset)(%rip)

        .section .rodata.vessel_guest_entry, "a", @progbits
        .balign 64
        .globl vessel_guest_entry, vessel_guest_entry_end, vessel_guest_cpuid
        .globl vessel_guest_lstar, vessel_guest_lstar_sysret
        .globl vessel_guest_lstar_cpl3, vessel_guest_lstar_cpl0
vessel_guest_entry:
.Lbase:
        mov     %rcx, SH(SH_SAVE_RCX)
.Lentry_saved:                          /* vessel_guest_lstar_cpl0 returns here */
        mov     %rsp, SH(SH_SAVE_RSP)
        lea     SH(SH_STACK_TOP), %rsp
        pushfq
        cmpq    $0, SH(SH_ENABLED)
        je      .Lexit
        mov     %rax, %r11              /* r11: the number, for the counts */
        test    %rax, %rax
        je      .Lread
        cmp     $39, %rax               /* getpid */
        je      .Lpid
        cmp     $186, %rax              /* gettid */
        je      .Lpid
        cmp     $102, %rax              /* getuid */
        je      .Luid
        cmp     $107, %rax              /* geteuid */
        je      .Luid
        cmp     $104, %rax              /* getgid */
        je      .Lgid
        cmp     $108, %rax              /* getegid */
        je      .Lgid
        cmp     $12, %rax               /* brk */
        je      .Lbrk
        cmp     $228, %rax              /* clock_gettime */
        je      .Lclock_gettime
        cmp     $96, %rax               /* gettimeofday */
        je      .Lgettimeofday
        cmp     $201, %rax              /* time */
        je      .Ltime
        cmp     $158, %rax              /* arch_prctl */
        je      .Larch_prctl
        cmp     $218, %rax              /* set_tid_address */
        je      .Ltid_address
        cmp     $273, %rax              /* set_robust_list */
        je      .Lrobust
        cmp     $302, %rax              /* prlimit64 */
        je      .Lprlimit
        cmp     $334, %rax              /* rseq: not supported (the VMM has no handler either) */
        je      .Lnosys
        cmp     $318, %rax              /* getrandom */
        je      .Lgetrandom
        cmp     $89, %rax               /* readlink */
        je      .Lreadlink
.Lexit:
        popfq
        mov     SH(SH_SAVE_RSP), %rsp
        out     %eax, (%dx)             /* to the VMM, which sets RAX, RCX, R11 */
        mov     SH(SH_SAVE_RCX), %rcx
        jmp     *%rcx

.Lpid:  mov     SH(SH_PID), %rax
        jmp     .Ldone
.Luid:  mov     SH(SH_UID), %rax
        jmp     .Ldone
.Lgid:  mov     SH(SH_GID), %rax
        jmp     .Ldone
.Lbrk:                                  /* a query (below the heap's start) returns the break */
        cmp     SH(SH_BRK_START), %rdi
        jb      1f
        cmp     SH(SH_BRK), %rdi        /* a shrink: the VMM frees the pages */
        jb      .Lexit
        cmp     SH(SH_BRK_LIMIT), %rdi  /* past the mapped heap: the VMM maps more */
        ja      .Lexit
        mov     %rdi, SH(SH_BRK)        /* growth into pages mapped ahead (still zero) */
1:      mov     SH(SH_BRK), %rax
        jmp     .Ldone
/* The clocks. Only CLOCK_REALTIME and CLOCK_MONOTONIC, only once the VMM
 * has calibrated the TSC (clk_valid), and only into the stack mapping (the
 * one range known writable); anything else goes to the VMM, which answers
 * from the same formula. */

/* .Lnow: RCX = the base to add. Returns RAX = seconds, RDX = nanoseconds;
 * clobbers RCX. */
.Lnow:
        rdtsc
        shl     $32, %rdx
        or      %rdx, %rax
        sub     SH(SH_CLK_TSC), %rax    /* ticks since the base */
        mulq    SH(SH_CLK_MULT)
        shrd    $32, %rdx, %rax         /* ns since the base */
        add     %rcx, %rax
        xor     %edx, %edx
        mov     $1000000000, %rcx
        div     %rcx
        ret

/* .Lon_stack16: is [RCX, RCX+16) inside the stack mapping? ZF set if so;
 * clobbers RCX. */
.Lon_stack16:
        cmp     SH(SH_STACK_LO), %rcx
        jb      1f
        add     $16, %rcx
        cmp     SH(SH_STACK_HI), %rcx
        ja      1f
        cmp     %rcx, %rcx
1:      ret                             /* after jb/ja: ZF clear */

.Lclock_gettime:                        /* clock_gettime(id, ts) */
        cmpq    $0, SH(SH_CLK_VALID)
        je      .Lexit
        cmp     $1, %rdi                /* CLOCK_REALTIME = 0, CLOCK_MONOTONIC = 1 */
        ja      .Lexit
        mov     %rsi, %rcx
        call    .Lon_stack16
        jne     .Lexit
        mov     %rdx, SH(SH_SAVE_RDX)
        mov     SH(SH_CLK_REAL), %rcx
        test    %rdi, %rdi
        jz      1f
        mov     SH(SH_CLK_MONO), %rcx
1:      call    .Lnow
        mov     %rax, (%rsi)
        mov     %rdx, 8(%rsi)
        mov     SH(SH_SAVE_RDX), %rdx
        xor     %eax, %eax
        jmp     .Ldone

.Lgettimeofday:                         /* gettimeofday(tv, NULL) */
        cmpq    $0, SH(SH_CLK_VALID)
        je      .Lexit
        test    %rsi, %rsi              /* a timezone asked for: the VMM fills it */
        jnz     .Lexit
        mov     %rdi, %rcx
        call    .Lon_stack16
        jne     .Lexit
        mov     %rdx, SH(SH_SAVE_RDX)
        mov     SH(SH_CLK_REAL), %rcx
        call    .Lnow
        mov     %rax, (%rdi)
        mov     %rdx, %rax
        xor     %edx, %edx
        mov     $1000, %rcx
        div     %rcx                    /* microseconds */
        mov     %rax, 8(%rdi)
        mov     SH(SH_SAVE_RDX), %rdx
        xor     %eax, %eax
        jmp     .Ldone

.Ltime:                                 /* time(NULL) */
        cmpq    $0, SH(SH_CLK_VALID)
        je      .Lexit
        test    %rdi, %rdi              /* a pointer to store to: the VMM does it */
        jnz     .Lexit
        mov     %rdx, SH(SH_SAVE_RDX)
        mov     SH(SH_CLK_REAL), %rcx
        call    .Lnow
        mov     SH(SH_SAVE_RDX), %rdx
        jmp     .Ldone

.Larch_prctl:                           /* ARCH_SET_FS to a user address, as the VMM would */
        cmpq    $0, SH(SH_FSGSBASE)
        je      .Lexit
        cmp     $0x1002, %rdi           /* ARCH_SET_FS */
        jne     .Lexit
        movabs  $0x800000000000, %rcx   /* the VMM answers EPERM at and above */
        cmp     %rcx, %rsi
        jae     .Lexit
        wrfsbase %rsi
        xor     %eax, %eax
        jmp     .Ldone
.Ltid_address:                          /* set_tid_address(ptr): the pid */
        mov     %rdi, SH(SH_TID_ADDRESS)
        mov     SH(SH_PID), %rax
        jmp     .Ldone
.Lprlimit:                              /* prlimit64(0 or 1, RLIMIT_STACK, NULL, old): a read */
        cmp     $1, %rdi
        ja      .Lexit
        cmp     $3, %rsi                /* RLIMIT_STACK */
        jne     .Lexit
        test    %rdx, %rdx              /* a new limit: the VMM checks it */
        jnz     .Lexit
        mov     %r10, %rcx
        call    .Lon_stack16
        jne     .Lexit
        mov     SH(SH_RLIM_STACK_CUR), %rcx
        mov     %rcx, (%r10)
        mov     SH(SH_RLIM_STACK_MAX), %rcx
        mov     %rcx, 8(%r10)
        xor     %eax, %eax
        jmp     .Ldone
.Lrobust:                               /* accepted when the size is struct robust_list_head's */
        cmp     $24, %rsi
        jne     .Lexit
        xor     %eax, %eax
        jmp     .Ldone
.Lnosys:
        mov     $-38, %rax              /* -ENOSYS */
        jmp     .Ldone

/* readlink(path, ...) of one of the program's own "/proc/self/exe" strings
 * (glibc's static start-up asks once): the guest's /proc has no such entry,
 * so -ENOENT, as the VMM answers. Only those addresses, which the VMM
 * publishes while the strings are there and read-only; no string is read
 * here. */
.Lreadlink:
        test    %rdi, %rdi              /* unused slots hold 0 */
        jz      .Lexit
        lea     SH(SH_SELF_EXE), %rcx
        cmp     (%rcx), %rdi
        je      1f
        cmp     8(%rcx), %rdi
        je      1f
        cmp     16(%rcx), %rdi
        je      1f
        cmp     24(%rcx), %rdi
        jne     .Lexit
1:      mov     $-2, %rax               /* -ENOENT */
        jmp     .Ldone

/* .Lwritable: is [RDI, RDI+RSI) inside the stack, the heap below the break,
 * or the program's data mapping? ZF set if so; clobbers RCX. */
.Lwritable:
        mov     %rdi, %rcx
        add     %rsi, %rcx
        jc      3f
        cmp     SH(SH_STACK_LO), %rdi
        jb      1f
        cmp     SH(SH_STACK_HI), %rcx
        jbe     4f
1:      cmp     SH(SH_BRK_START), %rdi
        jb      2f
        cmp     SH(SH_BRK), %rcx
        jbe     4f
2:      cmp     SH(SH_DATA_LO), %rdi
        jb      3f
        cmp     SH(SH_DATA_HI), %rcx
        jbe     4f
3:      test    %rsp, %rsp              /* not inside: ZF clear (RSP is never 0) */
        ret
4:      cmp     %rcx, %rcx
        ret

/* getrandom(buf, len, flags): 1 to GUEST_RAND_POOL bytes from the pool, when
 * that many are left and buf is known writable; flags GRND_NONBLOCK and
 * GRND_RANDOM only (the pool never blocks once the host's is ready). */
.Lgetrandom:
        test    $-4, %edx
        jnz     .Lexit
        lea     -1(%rsi), %rcx
        cmp     $(GUEST_RAND_POOL - 1), %rcx
        ja      .Lexit
        mov     SH(SH_RAND_POS), %rcx
        cmp     $GUEST_RAND_POOL, %rcx
        ja      .Lexit
        add     %rsi, %rcx
        cmp     $GUEST_RAND_POOL, %rcx
        ja      .Lexit
        call    .Lwritable
        jne     .Lexit
        mov     %rdi, SH(SH_SAVE_RDI)
        mov     %rsi, SH(SH_SAVE_RSI)
        mov     %rsi, %rcx
        mov     SH(SH_RAND_POS), %rax
        lea     SH(SH_RAND_POOL), %rsi
        add     %rax, %rsi              /* source: the next unused byte */
        add     %rcx, SH(SH_RAND_POS)
        cld                             /* the saved flags keep the caller's DF */
        rep movsb
        mov     SH(SH_SAVE_RDI), %rdi
        mov     SH(SH_SAVE_RSI), %rsi
        mov     %rsi, %rax
        jmp     .Ldone

/* read(fd, buf, count) from the read-ahead window: only when the whole count
 * is there and buf..buf+count lies in the range the VMM found writable;
 * anything else (end of window, end of file, another fd) goes to the VMM. */
.Lread:
        cmp     SH(SH_WIN_FD), %rdi
        jne     .Lexit
        mov     SH(SH_WIN_LEN), %rcx
        sub     SH(SH_WIN_POS), %rcx    /* rcx = bytes left in the window */
        jb      .Lexit
        cmp     %rcx, %rdx
        ja      .Lexit
        cmp     SH(SH_SAFE_LO), %rsi
        jb      .Lexit
        mov     %rsi, %rcx
        add     %rdx, %rcx
        jc      .Lexit
        cmp     SH(SH_SAFE_HI), %rcx
        ja      .Lexit
        mov     %rdi, SH(SH_SAVE_RDI)
        mov     %rsi, SH(SH_SAVE_RSI)
        mov     %rsi, %rdi              /* destination: the caller's buffer */
        mov     SH(SH_WIN_VA), %rsi
        add     SH(SH_WIN_POS), %rsi    /* source: the next unread byte */
        mov     %rdx, %rcx
        cld                             /* the saved flags keep the caller's DF */
        rep movsb
        add     %rdx, SH(SH_WIN_POS)
        mov     SH(SH_SAVE_RDI), %rdi
        mov     SH(SH_SAVE_RSI), %rsi
        mov     %rdx, %rax

.Ldone:                                 /* answered here: count it */
        lea     COUNTS, %rcx
        incq    (%rcx,%r11,8)
        mov     (%rsp), %r11            /* the flags, as `syscall` leaves R11 */
        popfq
        mov     SH(SH_SAVE_RSP), %rsp
        mov     SH(SH_SAVE_RCX), %rcx
        jmp     *%rcx

/* The guest-side CPUID. A rewritten `cpuid` site jumps to its stub, which
 * jumps here (through SH_CPUID_HANDLER) with eax = leaf, ecx = subleaf and
 * rbx = the address after the site. The answer comes from the host's
 * answers the VMM copied to GUEST_CPUID_VA (read only for the guest); a
 * leaf or subleaf not there runs the real instruction. As after `cpuid`:
 * rax, rbx, rcx and rdx hold the answer (upper halves zero), every other
 * register and the flags are kept, and the guest's stack is not touched. */
vessel_guest_cpuid:
        mov     %rbx, SH(SH_SAVE_RCX)   /* the return address */
        mov     %rsp, SH(SH_SAVE_RSP)
        lea     SH(SH_STACK_TOP), %rsp
        pushfq
        mov     CPUID(0), %edx          /* the count */
        cmp     $GUEST_CPUID_MAX, %edx
        jbe     1f
        mov     $GUEST_CPUID_MAX, %edx
1:      lea     CPUID(GUEST_CPUID_ANSWERS), %rbx
2:      sub     $1, %edx
        jb      .Lcpuid_native
        cmp     (%rbx), %eax
        jne     3f
        cmpl    $-1, 4(%rbx)            /* any subleaf */
        je      4f
        cmp     4(%rbx), %ecx
        je      4f
3:      add     $24, %rbx
        jmp     2b
4:      mov     8(%rbx), %eax
        mov     16(%rbx), %ecx
        mov     20(%rbx), %edx
        mov     12(%rbx), %ebx
        popfq
        mov     SH(SH_SAVE_RSP), %rsp
        jmp     *SH(SH_SAVE_RCX)
.Lcpuid_native:
        popfq
        mov     SH(SH_SAVE_RSP), %rsp
        cpuid
        jmp     *SH(SH_SAVE_RCX)

/* An un-rewritten `syscall` (code written at run time, a site the decoder
 * did not find) arrives here through MSR_LSTAR with Linux's convention:
 * RCX = the return address, R11 = the flags, the arguments in place. Under
 * PVM `syscall` stays at CPL3 and jumps here; on VT-x/AMD-V it enters CPL0
 * here, still on the caller's stack. Either way the `out` exits to the VMM,
 * which serves the call and sets RAX; at CPL0 it moves RIP to the `sysretq`
 * (back to CPL3 at RCX with R11's flags), at CPL3 the `jmp` returns. This
 * page is below mmap_min_addr: the guest can neither map over it nor make
 * it writable, so what runs at CPL0 here is this code only. */
vessel_guest_lstar:
        out     %eax, (%dx)
        jmp     *%rcx
vessel_guest_lstar_sysret:
        sysretq

/* Once the VMM has seen which of the two the platform does, it points
 * MSR_LSTAR at the matching one of these, and un-rewritten calls take the
 * entry code's path like rewritten ones (answered in the guest where it
 * can). At CPL3 (PVM) RCX and R11 are already what the entry code takes.
 * At CPL0 the return address goes where the entry code keeps it, and
 * `sysretq` resumes the entry code at CPL3, with the caller's flags. */
vessel_guest_lstar_cpl3:
        jmp     vessel_guest_entry
vessel_guest_lstar_cpl0:
        mov     %rcx, SH(SH_SAVE_RCX)
        lea     .Lentry_saved(%rip), %rcx
        sysretq
vessel_guest_entry_end:

        .section .note.GNU-stack, "", @progbits
