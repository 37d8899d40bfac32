/* Small reads of regular files and the guest-side system-call entry.
 * Usage: readahead DIR  — DIR must be writable.
 *
 * Inside vessel, small sequential reads are served from a read-ahead window
 * without a VM exit, and most sites reach the VMM through a stub and the
 * guest-side entry code (loader/rewriter.h, thin/guest_entry.h). Everything
 * here must look exactly as on Linux: file offsets, shared offsets of
 * dup()ed descriptors, writes through another descriptor, EFAULT, NULL
 * pointers, registers, flags and the stack below RSP. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"

#define FILE_SIZE (3 * 1024 * 1024 + 123)
#define CHUNK 4096

static unsigned char expected(long i) { return (unsigned char)(i * 7 ^ (i >> 9)); }

static int matches(const unsigned char* buf, long at, long n) {
    for (long i = 0; i < n; ++i)
        if (buf[i] != expected(at + i)) return 0;
    return 1;
}

static void make_file(const char* path) {
    static unsigned char data[FILE_SIZE];
    for (long i = 0; i < FILE_SIZE; ++i) data[i] = expected(i);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, data, FILE_SIZE) == FILE_SIZE);
    close(fd);
}

/* Sequential 4 KiB reads to the end, checking data and offsets on the way. */
static void sequential(const char* path) {
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    unsigned char buf[CHUNK];
    long at = 0, bad = 0;
    for (;;) {
        ssize_t n = read(fd, buf, CHUNK);
        if (n <= 0) {
            CHECK(n == 0);
            break;
        }
        if (!matches(buf, at, n)) ++bad;
        at += n;
        if (at % (100 * CHUNK) == 0 && lseek(fd, 0, SEEK_CUR) != at) ++bad;
    }
    CHECK(bad == 0);
    CHECK(at == FILE_SIZE);
    CHECK(read(fd, buf, CHUNK) == 0);
    close(fd);
}

/* Offsets seen through every call that uses them. */
static void offsets(const char* path) {
    int fd = open(path, O_RDONLY);
    unsigned char buf[CHUNK];
    CHECK(read(fd, buf, 100) == 100 && matches(buf, 0, 100));
    CHECK(read(fd, buf, 100) == 100 && matches(buf, 100, 100));
    CHECK(lseek(fd, 0, SEEK_CUR) == 200);
    /* A dup shares the offset: it reads on from 200, and moves it for fd. */
    int d = dup(fd);
    CHECK(read(d, buf, 50) == 50 && matches(buf, 200, 50));
    CHECK(read(fd, buf, 50) == 50 && matches(buf, 250, 50));
    /* pread neither uses nor moves it. */
    CHECK(pread(fd, buf, 10, 5000) == 10 && matches(buf, 5000, 10));
    CHECK(read(fd, buf, 10) == 10 && matches(buf, 300, 10));
    CHECK(lseek(fd, 1000, SEEK_SET) == 1000);
    CHECK(read(fd, buf, 10) == 10 && matches(buf, 1000, 10));
    CHECK(lseek(d, 0, SEEK_CUR) == 1010);
    close(d);
    CHECK(read(fd, buf, 10) == 10 && matches(buf, 1010, 10));
    close(fd);
}

/* Bytes changed through another descriptor after a read are seen. */
static void writes_elsewhere(const char* path) {
    int r = open(path, O_RDONLY), w = open(path, O_WRONLY);
    unsigned char buf[CHUNK];
    CHECK(read(r, buf, 64) == 64);
    CHECK(pwrite(w, "ZZZZ", 4, 64) == 4);
    CHECK(read(r, buf, 8) == 8 && memcmp(buf, "ZZZZ", 4) == 0 && matches(buf + 4, 68, 4));
    CHECK(write(w, "YY", 2) == 2); /* at offset 0 of w */
    CHECK(lseek(r, 0, SEEK_SET) == 0 && read(r, buf, 4) == 4 && memcmp(buf, "YY", 2) == 0);
    close(r);
    close(w);
    make_file(path); /* restore the pattern */
}

/* Bad buffers fail with EFAULT and leave the offset where it was. */
static void faults(const char* path) {
    int fd = open(path, O_RDONLY);
    unsigned char buf[CHUNK];
    CHECK(read(fd, buf, 16) == 16);
    errno = 0;
    void* volatile bad = (void*)8; /* hidden from the compiler's bounds checks */
    CHECK(read(fd, bad, 16) == -1 && errno == EFAULT);
    void* ro = mmap(0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED);
    errno = 0;
    CHECK(read(fd, ro, 16) == -1 && errno == EFAULT);
    CHECK(lseek(fd, 0, SEEK_CUR) == 16);
    /* A buffer that was fine, then unmapped. */
    unsigned char* m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(read(fd, m, 16) == 16 && matches(m, 16, 16));
    CHECK(munmap(m, 4096) == 0);
    errno = 0;
    CHECK(read(fd, m, 16) == -1 && errno == EFAULT);
    CHECK(read(fd, buf, 16) == 16 && matches(buf, 32, 16));
    munmap(ro, 4096);
    /* NULL is not mapped: a read into it fails, as on Linux. */
    errno = 0;
    void* volatile null = 0;
    CHECK(read(fd, null, 16) == -1 && errno == EFAULT);
    close(fd);
}

/* A red zone in use across a system call survives it: the kernel never
 * touches the user stack, and neither may a rewritten site or its stub. */
__attribute__((noinline)) static long red_zone_survives(void) {
    long out;
    __asm__ volatile(
        "movq $0x1234, -8(%%rsp)\n\t"
        "mov $39, %%eax\n\t" /* getpid */
        "syscall\n\t"
        "movq -8(%%rsp), %0"
        : "=r"(out)
        :
        : "rax", "rcx", "r11", "memory");
    return out;
}

/* System call NR through a `mov $NR, %eax; syscall` site (a stub site) with
 * the carry flag set before it: RET gets RAX, CARRY whether CF survived, and
 * RDI, RSI, RDX (in/out lvalues) what the call left in them. */
#define STC_SYSCALL3(nr, rdi, rsi, rdx, ret, carry)                                        \
    __asm__ volatile("stc\n\tmov $" #nr ", %%eax\n\tsyscall\n\tsetc %1"                \
                     : "=a"(ret), "=r"(carry), "+D"(rdi), "+S"(rsi), "+d"(rdx)               \
                     :                                                                   \
                     : "rcx", "r11", "memory")

/* Registers and flags across a call answered by the guest-side entry
 * (getuid, or a read from the window) and one sent to the VMM. */
static void registers(const char* path) {
    long rdi = 0x1111, rsi = 0x2222, rdx = 0x3333, ret;
    unsigned char carry;
    STC_SYSCALL3(102 /* getuid */, rdi, rsi, rdx, ret, carry);
    CHECK(ret == (long)getuid() && carry == 1);
    CHECK(rdi == 0x1111 && rsi == 0x2222 && rdx == 0x3333);

    int fd = open(path, O_RDONLY);
    unsigned char buf[64];
    CHECK(read(fd, buf, 32) == 32);
    long fdl = fd, bufl = (long)(uintptr_t)buf, n = 32;
    __asm__ volatile(
        "stc\n\t"
        "xor %%eax, %%eax\n\t" /* read */
        "stc\n\t"
        "syscall\n\t"
        "setc %1"
        : "=a"(ret), "=r"(carry), "+D"(fdl), "+S"(bufl), "+d"(n)
        :
        : "rcx", "r11", "memory");
    CHECK(ret == 32 && matches(buf, 32, 32) && carry == 1);
    CHECK(fdl == fd && bufl == (long)(uintptr_t)buf && n == 32);
    close(fd);

    CHECK(red_zone_survives() == 0x1234);
    /* Numbers no kernel has, through a site the entry code sees (a constant
     * before it) and through glibc's/musl's syscall() (a register). */
    CHECK(RAW0(400) == -ENOSYS);
    CHECK(RAW0(100000) == -ENOSYS);
    errno = 0;
    CHECK(syscall(100000) == -1 && errno == ENOSYS);
    CHECK(RAW0(SYS_getpid) == getpid() && RAW0(SYS_gettid) == getpid());
    /* brk queries are answered in the guest: they must follow every change. */
    long cur = RAW1(SYS_brk, 0);
    CHECK(cur > 0);
    CHECK(RAW1(SYS_brk, cur + 8192) == cur + 8192);
    CHECK(RAW1(SYS_brk, 0) == cur + 8192);
    CHECK(RAW1(SYS_brk, cur) == cur);
    CHECK(RAW1(SYS_brk, 0) == cur);
    /* set_tid_address answers the thread id, the pid of a one-thread process. */
    static int tid_word;
    CHECK(RAW1(SYS_set_tid_address, &tid_word) == getpid());
    /* User-mode FS base access where the kernel allows it (HWCAP2_FSGSBASE),
     * agreeing with arch_prctl; set through arch_prctl, read back both ways. */
    if (getauxval(AT_HWCAP2) & 2) {
        unsigned long fs, via_prctl = 0, after;
        __asm__ volatile("rdfsbase %0" : "=r"(fs));
        CHECK(RAW2(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &via_prctl) == 0 && via_prctl == fs);
        CHECK(RAW2(SYS_arch_prctl, 0x1002 /* ARCH_SET_FS */, fs + 64) == 0);
        __asm__ volatile("rdfsbase %0" : "=r"(after));
        CHECK(RAW2(SYS_arch_prctl, 0x1003, &via_prctl) == 0 && via_prctl == fs + 64);
        CHECK(RAW2(SYS_arch_prctl, 0x1002, fs) == 0); /* back, before libc needs its TLS */
        CHECK(after == fs + 64);
    }
    /* prlimit64 reads of RLIMIT_STACK: into the stack (answered in the
     * guest) and elsewhere (by the VMM), the same. */
    struct rlimit on_stack;
    static struct rlimit elsewhere;
    CHECK(RAW4(SYS_prlimit64, 0, RLIMIT_STACK, 0, &on_stack) == 0);
    CHECK(RAW4(SYS_prlimit64, 0, RLIMIT_STACK, 0, &elsewhere) == 0);
    CHECK(on_stack.rlim_cur == elsewhere.rlim_cur && on_stack.rlim_max == elsewhere.rlim_max);
    CHECK(RAW4(SYS_prlimit64, 0, RLIMIT_STACK, 0, 8) == -EFAULT);
    static long robust_head[3];
    CHECK(RAW2(SYS_set_robust_list, robust_head, 24) == 0);
    CHECK(RAW2(SYS_set_robust_list, robust_head, 23) == -EINVAL);
    CHECK(RAW0(SYS_geteuid) == (long)geteuid() && RAW0(SYS_getgid) == (long)getgid() &&
          RAW0(SYS_getegid) == (long)getegid());
}

/* getrandom: answered from the entry code's pool into the stack, the heap
 * and the program's data, by the VMM otherwise; lengths, flags, faults and
 * registers as on Linux, and fresh bytes every time (the pool refills). */
static unsigned char data_buf[512];

static int all_zero(const unsigned char* p, int n) {
    int z = 1;
    for (int i = 0; i < n; ++i) z &= p[i] == 0;
    return z;
}

static void random_bytes(void) {
    unsigned char stack_buf[512];
    unsigned char* heap_buf = malloc(512);
    unsigned char* mapped = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char* targets[] = {stack_buf, heap_buf, data_buf, mapped};
    for (int t = 0; t < 4; ++t) {
        int zero = 0, ok = 1;
        for (int round = 0; round < 40; ++round) { /* 640 bytes: the pool runs dry and refills */
            memset(targets[t], 0, 17);
            ok &= RAW3(SYS_getrandom, targets[t], 16, 0) == 16;
            zero |= all_zero(targets[t], 16);
            ok &= targets[t][16] == 0; /* nothing past the end */
        }
        CHECK(ok && !zero);
    }
    unsigned char a[16], b[16];
    CHECK(RAW3(SYS_getrandom, a, 16, 0) == 16 && RAW3(SYS_getrandom, b, 16, 0) == 16 && memcmp(a, b, 16) != 0);
    CHECK(RAW3(SYS_getrandom, stack_buf, 0, 0) == 0);
    CHECK(RAW3(SYS_getrandom, stack_buf, 300, 0) == 300 && !all_zero(stack_buf + 284, 16));
    CHECK(RAW3(SYS_getrandom, stack_buf, 8, GRND_NONBLOCK | GRND_RANDOM) == 8);
    CHECK(RAW3(SYS_getrandom, stack_buf, 8, 0x100) == -EINVAL);
    CHECK(RAW3(SYS_getrandom, NULL, 8, 0) == -EFAULT);
    CHECK(RAW3(SYS_getrandom, "a read-only string", 8, 0) == -EFAULT);
    CHECK(getrandom(heap_buf, 64, 0) == 64);
    /* Registers and flags, as after `syscall`. */
    long rdi = (long)(uintptr_t)stack_buf, rsi = 24, rdx = 0, ret;
    unsigned char carry;
    STC_SYSCALL3(318 /* getrandom */, rdi, rsi, rdx, ret, carry);
    CHECK(ret == 24 && carry == 1);
    CHECK(rdi == (long)(uintptr_t)stack_buf && rsi == 24 && rdx == 0);
    munmap(mapped, 4096);
    free(heap_buf);
}

int main(int argc, char** argv) {
    if (argc < 2) return 2;
    char path[4096];
    snprintf(path, sizeof path, "%s/readahead.dat", argv[1]);
    make_file(path);
    sequential(path);
    offsets(path);
    writes_elsewhere(path);
    faults(path);
    registers(path);
    random_bytes();
    unlink(path);
    return finish("readahead");
}
