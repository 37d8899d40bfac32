/* Ways for a guest to fault. Usage: crash MODE; the program never exits
 * normally. MODE: null (read address 0), write-ro (store to read-only
 * memory), ud2, stray-syscall (`syscall`s the loader never saw: exits
 * 42 through them), hlt,
 * int3, divide, jump-wild; abort, raise-term (signals to itself that kill
 * it); ignored (signals it ignores, or whose default is to ignore: it then
 * exits 0). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile long zero = 0;

int main(int argc, char** argv) {
    const char* mode = argc > 1 ? argv[1] : "null";
    printf("crash: %s\n", mode);
    fflush(stdout);
    if (!strcmp(mode, "null")) return *(volatile int*)(uintptr_t)zero;
    if (!strcmp(mode, "write-ro")) {
        static const int ro = 1;
        *(volatile int*)&ro = 2;
    }
    if (!strcmp(mode, "ud2")) __asm__ volatile("ud2");
    if (!strcmp(mode, "hlt")) __asm__ volatile("hlt");
    if (!strcmp(mode, "int3")) __asm__ volatile("int3");
    if (!strcmp(mode, "divide")) __asm__ volatile("xor %%ecx, %%ecx; div %%ecx" ::: "eax", "ecx", "edx");
    if (!strcmp(mode, "jump-wild")) ((void (*)(void))(uintptr_t)0xdead0000)();
    if (!strcmp(mode, "abort")) abort(); /* raise(SIGABRT) with every signal blocked, then unblocked */
    if (!strcmp(mode, "raise-term")) raise(SIGTERM);
    if (!strcmp(mode, "ignored")) {
        signal(SIGUSR1, SIG_IGN);
        if (raise(SIGUSR1) != 0 || kill(getpid(), SIGCHLD) != 0 || kill(getpid(), 0) != 0) return 2;
        return 0;
    }
    if (!strcmp(mode, "stray-syscall")) {
        /* Written at run time, so no load-time rewrite covers them, two
         * system calls: write(-1, ...) returns -EBADF (-9) and execution goes
         * on after it; then exit(9 + 33). Skipped calls would run into the
         * zeros after the code and fault.
         *   mov eax, 1; mov edi, -1; syscall; mov edi, eax; neg edi;
         *   add edi, 33; mov eax, 60; syscall */
        static const unsigned char code[] = {0xb8, 1,    0,    0,    0, 0xbf, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x05, 0x89,
                                             0xc7, 0xf7, 0xdf, 0x83, 0xc7, 33, 0xb8, 60, 0, 0, 0, 0x0f, 0x05};
        unsigned char* p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return 3;
        memcpy(p, code, sizeof code);
        ((void (*)(void))p)();
    }
    return 0;  /* survived: the test fails on status 0 */
}
