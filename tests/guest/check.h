/* Tiny assertion kit shared by the guest test programs.
 *
 * The programs run twice: natively (to prove each expectation is what Linux
 * really does) and inside `vessel run` (to prove the VMM does the same). They
 * print one line per failed check and exit 1 if any failed, 0 otherwise.
 * Only libc headers are used: musl-gcc has no kernel headers. */
#ifndef VESSEL_GUEST_CHECK_H
#define VESSEL_GUEST_CHECK_H

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

static int g_checks, g_failures;

#define CHECK(cond)                                                                                               \
    do {                                                                                                          \
        ++g_checks;                                                                                               \
        if (!(cond)) {                                                                                            \
            ++g_failures;                                                                                         \
            fprintf(stderr, "FAIL %s:%d: %s (errno %d %s)\n", __FILE__, __LINE__, #cond, errno, strerror(errno)); \
        }                                                                                                         \
    } while (0)

/* A raw syscall returning -errno, without libc (no errno, no TLS), so calls
 * like arch_prctl(ARCH_SET_FS) can run while the thread pointer is not libc's. */
static inline long raw6(long nr, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#define RAW0(nr) raw6((nr), 0, 0, 0, 0, 0, 0)
#define RAW1(nr, a) raw6((nr), (long)(a), 0, 0, 0, 0, 0)
#define RAW2(nr, a, b) raw6((nr), (long)(a), (long)(b), 0, 0, 0, 0)
#define RAW3(nr, a, b, c) raw6((nr), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define RAW4(nr, a, b, c, d) raw6((nr), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define RAW5(nr, a, b, c, d, e) raw6((nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

static int finish(const char* name) {
    printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
    fflush(stdout);
    return g_failures ? 1 : 0;
}

#endif
