/* The clocks, read often: inside vessel most reads are answered by the
 * guest-side entry from the TSC (thin/guest_entry.h), the rest by the VMM;
 * both must agree with each other and behave as Linux's clocks do.
 * Usage: clocks [vessel]  ("vessel": also check that the guest answered). */
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "abi/thin_guest.h"

static int64_t ns(const struct timespec* t) { return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec; }

/* clock_gettime through a site that always exits to the VMM (the number is
 * loaded RIP-relative, so the rewriter leaves it an exit site). */
static volatile long clock_gettime_nr = SYS_clock_gettime;
static long exit_clock_gettime(long id, struct timespec* ts) {
    long ret;
    __asm__ volatile("mov clock_gettime_nr(%%rip), %%eax\n\tsyscall"
                     : "=a"(ret)
                     : "D"(id), "S"(ts)
                     : "rcx", "r11", "memory");
    return ret;
}

int main(int argc, char** argv) {
    int in_vessel = argc > 1 && !strcmp(argv[1], "vessel");
    struct timespec start, t, prev, e;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &start) == 0);
    do /* past the VMM's calibration (20 ms) */
        CHECK(clock_gettime(CLOCK_MONOTONIC, &t) == 0);
    while (ns(&t) - ns(&start) < 40000000);

    long backwards = 0, disagree = 0;
    int64_t min_off = INT64_MAX, max_off = INT64_MIN;
    prev = t;
    for (long i = 0; i < 300000; ++i) {
        CHECK(clock_gettime(CLOCK_MONOTONIC, &t) == 0);
        if (ns(&t) < ns(&prev)) ++backwards;
        prev = t;
        if (i % 1000 == 0) {
            /* The VMM's answer sits between the guest's before and after. */
            CHECK(exit_clock_gettime(CLOCK_MONOTONIC, &e) == 0);
            struct timespec after;
            clock_gettime(CLOCK_MONOTONIC, &after);
            if (ns(&e) < ns(&t) || ns(&after) < ns(&e)) ++disagree;
            prev = after;
            /* A sample the scheduler interrupted (a loaded machine) says
             * nothing about the clocks: only pairs read within 0.2 ms. */
            struct timespec r, again;
            clock_gettime(CLOCK_REALTIME, &r);
            clock_gettime(CLOCK_MONOTONIC, &again);
            prev = again;
            if (ns(&again) - ns(&after) < 200000) {
                int64_t off = ns(&r) - ns(&after);
                if (off < min_off) min_off = off;
                if (off > max_off) max_off = off;
            }
        }
        if (i % 100000 == 99999) {
            struct timespec nap = {0, 1000000};
            nanosleep(&nap, 0);
        }
    }
    CHECK(backwards == 0);
    CHECK(disagree == 0);
    CHECK(max_off - min_off < 5000000); /* REALTIME - MONOTONIC stays put (5 ms) */

    /* An absolute sleep ends at or after its deadline, by the same clock. */
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_nsec += 5000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_nsec -= 1000000000;
        deadline.tv_sec += 1;
    }
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, 0) == 0);
    clock_gettime(CLOCK_MONOTONIC, &t);
    CHECK(ns(&t) >= ns(&deadline));

    /* gettimeofday and time agree with CLOCK_REALTIME. */
    struct timespec r1, r2;
    struct timeval tv;
    clock_gettime(CLOCK_REALTIME, &r1);
    CHECK(gettimeofday(&tv, 0) == 0);
    time_t now = time(0);
    clock_gettime(CLOCK_REALTIME, &r2);
    int64_t tv_ns = (int64_t)tv.tv_sec * 1000000000 + tv.tv_usec * 1000;
    CHECK(tv_ns >= ns(&r1) - 1000 && tv_ns <= ns(&r2));
    CHECK(now >= r1.tv_sec - 1 && now <= r2.tv_sec);
    struct timezone tz;
    CHECK(gettimeofday(&tv, &tz) == 0);

    /* Results stored outside the stack, and bad pointers. */
    static struct timespec global;
    CHECK(clock_gettime(CLOCK_MONOTONIC, &global) == 0 && ns(&global) >= ns(&t));
    struct timespec* volatile bad = (struct timespec*)8;
    errno = 0;
    CHECK(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, bad) == -1 && errno == EFAULT);
    CHECK(syscall(SYS_clock_gettime, 12345, &t) == -1 && errno == EINVAL);

    if (in_vessel) {
        /* Most reads never left the guest (its per-number counts page). */
        volatile uint64_t* counts = (volatile uint64_t*)(uintptr_t)GUEST_COUNTS_VA;
        CHECK(counts[SYS_clock_gettime] > 250000);
    }
    return finish("clocks");
}
