// A pure CPU loop: no memory traffic beyond registers and no system calls
// inside the timed part. Prints the checksum (so the loop cannot be
// optimised away) and the loop's own wall time in milliseconds on stderr.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 400000000L;
    if (n <= 0) {
        fprintf(stderr, "usage: %s [ITERATIONS]\n", argv[0]);
        return 2;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t x = 0x9e3779b97f4a7c15ull, acc = 0;
    for (long i = 0; i < n; ++i) {  // xorshift64: a dependent chain of ALU ops
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc += x;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    printf("%llu\n", (unsigned long long)acc);
    fprintf(stderr, "%.3f\n", ms);
    return 0;
}
