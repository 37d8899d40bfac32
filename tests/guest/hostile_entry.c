/* A guest that scribbles on the shared page of the guest-side system-call
 * entry (abi/thin_guest.h), which guest user mode can write. Only
 * meaningful inside vessel (natively there is nothing at that address).
 * Usage: hostile_entry DIR MODE
 *   window   a window that claims 2^40 bytes at a supervisor-only address
 *            over a live descriptor: the entry code faults (the guest's own
 *            crash, status 139: SIGSEGV)
 *   bounds   a window longer than the buffer, a position past its end, and
 *            one for a closed descriptor: the VMM drops them and offsets
 *            stay right; a break and a heap limit out of range: the VMM
 *            keeps its own (exit 0, "0 failed")
 *   handler  the entry code's address replaced by 0: the next call through
 *            a stub jumps to NULL (the guest's own crash, status 139)
 *   data     the "known writable" data range widened over the GDT: getrandom
 *            from the pool faults there (the guest's own crash, status 139)
 * In no case may the VMM itself fail. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "abi/thin_guest.h"

/* read(2) through a `mov $0,%eax; syscall` site, which the rewriter always
 * sends through a stub and the entry code (glibc's and musl's own read
 * sites differ). */
static long stub_read(int fd, void* buf, long n) {
    long ret;
    __asm__ volatile("mov $0, %%eax\n\tsyscall" : "=a"(ret) : "D"((long)fd), "S"(buf), "d"(n) : "rcx", "r11", "memory");
    return ret;
}

static volatile uint64_t* field(unsigned offset) { return (volatile uint64_t*)(uintptr_t)(GUEST_SHARED_VA + offset); }

int main(int argc, char** argv) {
    if (argc < 3) return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/hostile.dat", argv[1]);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    static char data[256 * 1024];
    for (unsigned i = 0; i < sizeof data; ++i) data[i] = (char)(i * 13);
    CHECK(write(fd, data, sizeof data) == (ssize_t)sizeof data);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    char buf[64];
    CHECK(stub_read(fd, buf, 16) == 16); /* a window is live from here on */

    if (!strcmp(argv[2], "window")) {
        *field(SH_WIN_FD) = (uint64_t)fd;
        *field(SH_WIN_VA) = 0x1000; /* the GDT: supervisor only */
        *field(SH_WIN_LEN) = 1ull << 40;
        *field(SH_WIN_POS) = 0;
        *field(SH_SAFE_LO) = 0;
        *field(SH_SAFE_HI) = ~0ull;
        (void)stub_read(fd, buf, 16);
        puts("survived a window at a supervisor address");
        return 3;
    }
    if (!strcmp(argv[2], "bounds")) {
        *field(SH_WIN_LEN) = 5u << 20; /* more than any window */
        *field(SH_WIN_POS) = 7;
        CHECK(lseek(fd, 0, SEEK_CUR) == 16 || lseek(fd, 0, SEEK_CUR) >= 0);
        CHECK(lseek(fd, 100, SEEK_SET) == 100);
        CHECK(read(fd, buf, 16) == 16 && memcmp(buf, data + 100, 16) == 0);
        *field(SH_WIN_POS) = *field(SH_WIN_LEN) + 1; /* past the end */
        CHECK(lseek(fd, 0, SEEK_CUR) >= 0);
        CHECK(lseek(fd, 200, SEEK_SET) == 200);
        CHECK(read(fd, buf, 16) == 16 && memcmp(buf, data + 200, 16) == 0);
        *field(SH_WIN_FD) = 999; /* not open */
        *field(SH_WIN_LEN) = 4096;
        *field(SH_WIN_POS) = 0;
        CHECK(lseek(fd, 300, SEEK_SET) == 300);
        CHECK(read(fd, buf, 16) == 16 && memcmp(buf, data + 300, 16) == 0);
        *field(SH_ENABLED) = 12345;
        CHECK(getuid() == (uid_t)*field(SH_UID));
        /* A wild break and a wild limit fool only the entry code: the VMM
         * keeps its own break and publishes it again. */
        *field(SH_ENABLED) = 0; /* every call to the VMM, which answers from its own break */
        uintptr_t b = (uintptr_t)syscall(SYS_brk, 0) + 1;
        CHECK((uintptr_t)syscall(SYS_brk, b) == b); /* it maps heap pages past the break */
        *field(SH_BRK) = 1ull << 60;
        CHECK((uintptr_t)syscall(SYS_brk, 1) == b);
        *field(SH_BRK) = b + 4096; /* within the heap mapped: taken as the guest's growth */
        CHECK((uintptr_t)syscall(SYS_brk, 1) == b + 4096);
        *field(SH_ENABLED) = 1;
        *field(SH_BRK) = 1ull << 60;
        *field(SH_BRK_LIMIT) = ~0ull;
        CHECK((uintptr_t)syscall(SYS_brk, b) == b); /* below SH_BRK: to the VMM */
        CHECK((uintptr_t)syscall(SYS_brk, 0) == b);
        *field(SH_BRK) = 0x10000; /* below the break: ignored as well */
        CHECK((uintptr_t)syscall(SYS_brk, b + 100) == b + 100);
        CHECK((uintptr_t)syscall(SYS_brk, b + 8192) == b + 8192);
        ((volatile char*)b)[8191] = 1; /* mapped */
        CHECK((uintptr_t)syscall(SYS_brk, b) == b);
        /* The random pool: a position past its end, or one that leaves too
         * little, sends the call to the VMM, which refills the pool. */
        unsigned char rnd[32];
        *field(SH_RAND_POS) = ~0ull;
        CHECK(syscall(SYS_getrandom, rnd, sizeof rnd, 0) == (long)sizeof rnd);
        *field(SH_RAND_POS) = GUEST_RAND_POOL - 4;
        CHECK(syscall(SYS_getrandom, rnd, sizeof rnd, 0) == (long)sizeof rnd);
        CHECK(*field(SH_RAND_POS) <= sizeof rnd);
        close(fd);
        unlink(path);
        return finish("hostile_entry bounds");
    }
    if (!strcmp(argv[2], "data")) {
        *field(SH_DATA_LO) = 0x1000;
        *field(SH_DATA_HI) = 0x2000;
        (void)raw6(SYS_getrandom, 0x1000, 16, 0, 0, 0, 0);
        puts("survived random bytes into the GDT");
        return 3;
    }
    if (!strcmp(argv[2], "handler")) {
        *field(SH_HANDLER) = 0;
        (void)stub_read(fd, buf, 16);
        puts("survived a NULL entry");
        return 3;
    }
    return 2;
}
