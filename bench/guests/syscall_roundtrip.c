// Syscall round-trip cost: N getppid() calls through syscall(2), timed with
// CLOCK_MONOTONIC around the loop. Prints the mean nanoseconds per call.
// With a second argument "getuid": N getuid() calls through glibc's wrapper
// instead, a call vessel's guest-side entry answers without a VM exit.
// Built static so the same file runs natively and in `vessel run`.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int in_guest = argc > 2 && argv[2][0] == 'g';
    if (n <= 0) {
        fprintf(stderr, "usage: %s [CALLS]\n", argv[0]);
        return 2;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (in_guest) {
        unsigned sum = 0;
        for (long i = 0; i < n; ++i) sum += getuid();
        if (sum == 1) puts("");  // keeps the calls
    } else {
        for (long i = 0; i < n; ++i) syscall(SYS_getppid);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
    printf("%.1f\n", ns / (double)n);
    return 0;
}
