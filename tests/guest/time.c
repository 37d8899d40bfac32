/* Clocks and sleeps: clock_gettime, clock_getres, gettimeofday, time,
 * nanosleep, clock_nanosleep. */
#include <stdint.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int64_t ns(const struct timespec* t) { return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec; }

int main(void) {
    struct timespec rt, m1, m2, res;
    CHECK(syscall(SYS_clock_gettime, CLOCK_REALTIME, &rt) == 0);
    CHECK(rt.tv_sec > 1600000000 && rt.tv_nsec >= 0 && rt.tv_nsec < 1000000000);
    time_t t = 0;
    long t2 = syscall(SYS_time, &t);
    /* time() reads the coarse clock, which Linux advances once per tick: it
     * may still show the previous second just after clock_gettime crossed it. */
    CHECK(t2 + 1 >= rt.tv_sec && t2 - rt.tv_sec < 5 && t == t2);
    CHECK(time(NULL) + 1 >= rt.tv_sec);
    struct timeval tv;
    CHECK(syscall(SYS_gettimeofday, &tv, NULL) == 0 && tv.tv_sec >= rt.tv_sec && tv.tv_sec - rt.tv_sec < 5);
    CHECK(tv.tv_usec >= 0 && tv.tv_usec < 1000000);
    CHECK(gettimeofday(&tv, NULL) == 0);
    CHECK(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &m1) == 0);
    CHECK(clock_gettime(CLOCK_BOOTTIME, &m2) == 0 && clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &m2) == 0);
    CHECK(syscall(SYS_clock_gettime, 12345, &m2) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_clock_gettime, CLOCK_MONOTONIC, (void*)8) == -1 && errno == EFAULT);
    CHECK(clock_getres(CLOCK_MONOTONIC, &res) == 0 && ns(&res) > 0 && ns(&res) <= 10000000);

    struct timespec d = {0, 20 * 1000000};
    CHECK(syscall(SYS_nanosleep, &d, NULL) == 0);
    CHECK(clock_gettime(CLOCK_MONOTONIC, &m2) == 0 && ns(&m2) - ns(&m1) >= 20 * 1000000);
    struct timespec badts = {0, 1000000000};
    CHECK(syscall(SYS_nanosleep, &badts, NULL) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &d, NULL) == 0);
    struct timespec m3;
    clock_gettime(CLOCK_MONOTONIC, &m3);
    CHECK(ns(&m3) - ns(&m2) >= 20 * 1000000);
    /* Absolute: wake at m3 + 15 ms. */
    struct timespec until = m3;
    until.tv_nsec += 15 * 1000000;
    if (until.tv_nsec >= 1000000000) until.tv_sec++, until.tv_nsec -= 1000000000;
    CHECK(syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == 0);
    struct timespec m4;
    clock_gettime(CLOCK_MONOTONIC, &m4);
    CHECK(ns(&m4) >= ns(&until));
    /* clock_nanosleep reports errors as its return value, not through errno. */
    CHECK(clock_nanosleep(CLOCK_MONOTONIC, 0, &badts, NULL) == EINVAL);
    CHECK(clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &d, NULL) == EINVAL);
    CHECK(usleep(1000) == 0);
    return finish("time");
}
