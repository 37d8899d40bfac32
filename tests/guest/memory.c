/* Memory calls: brk, mmap (anonymous, private file, fixed), munmap, mprotect,
 * mremap, madvise. Usage: memory FILE — FILE holds 5000 bytes, byte i = i % 251. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"

static void heap(void) {
    uintptr_t cur = (uintptr_t)syscall(SYS_brk, 0);
    CHECK(cur != 0);
    uintptr_t want = cur + 3 * 4096 + 123;
    CHECK((uintptr_t)syscall(SYS_brk, want) == want);
    memset((void*)cur, 0x5a, want - cur);  /* the new heap is usable */
    CHECK(((unsigned char*)cur)[want - cur - 1] == 0x5a);
    CHECK((uintptr_t)syscall(SYS_brk, cur) == cur);     /* shrink */
    CHECK((uintptr_t)syscall(SYS_brk, 1) == cur);       /* below the start: refused */
    /* Growth in small steps (inside vessel, into heap pages mapped ahead,
     * without an exit): every new byte is zero, and queries agree. */
    uintptr_t b = cur;
    int zero = 1;
    for (int i = 0; i < 40; ++i) {
        uintptr_t next = b + 1000 + 777 * i;
        CHECK((uintptr_t)syscall(SYS_brk, next) == next);
        CHECK((uintptr_t)syscall(SYS_brk, 0) == next);
        for (uintptr_t q = b; q < next; ++q) zero &= *(volatile unsigned char*)q == 0;
        memset((void*)b, 0xc3, next - b);
        b = next;
    }
    CHECK(zero);
    /* A shrink frees the pages above the new break: grown again, in steps
     * or at once, they read as zero. */
    CHECK((uintptr_t)syscall(SYS_brk, cur) == cur);
    uintptr_t first_page = (cur + 4095) & ~(uintptr_t)4095;
    CHECK((uintptr_t)syscall(SYS_brk, cur + 5000) == cur + 5000);
    CHECK((uintptr_t)syscall(SYS_brk, b) == b);
    zero = 1;
    for (uintptr_t q = first_page; q < b; ++q) zero &= *(volatile unsigned char*)q == 0;
    CHECK(zero);
    /* A mapping above the break stops it, as on Linux; gone, it does not. */
    uintptr_t wall = ((b + (1u << 20)) & ~(uintptr_t)4095);
    void* w = mmap((void*)wall, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (w == (void*)wall) {
        CHECK((uintptr_t)syscall(SYS_brk, wall + 8192) == b);
        CHECK((uintptr_t)syscall(SYS_brk, 0) == b);
        CHECK(munmap(w, 4096) == 0);
        CHECK((uintptr_t)syscall(SYS_brk, wall + 8192) == wall + 8192);
        CHECK((uintptr_t)syscall(SYS_brk, b) == b);
    }
    /* Past any lookahead: 8 MiB more, in one step, usable at its far end. */
    uintptr_t far = b + (8u << 20);
    CHECK((uintptr_t)syscall(SYS_brk, far) == far);
    CHECK(((volatile unsigned char*)far)[-1] == 0);
    ((volatile unsigned char*)far)[-1] = 7;
    CHECK((uintptr_t)syscall(SYS_brk, cur) == cur);
    void* m = malloc(1 << 20);                           /* libc's heap still works */
    CHECK(m != NULL);
    memset(m, 1, 1 << 20);
    free(m);
}

static void anonymous(void) {
    size_t len = 5 * 4096;
    unsigned char* p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED);
    if (p == MAP_FAILED) return;
    int zero = 1;
    for (size_t i = 0; i < len; ++i) zero &= p[i] == 0;
    CHECK(zero);
    memset(p, 0xab, len);
    /* madvise(DONTNEED) on private anonymous memory reads back as zeros. */
    CHECK(madvise(p + 4096, 4096, MADV_DONTNEED) == 0);
    CHECK(p[4096] == 0 && p[8191] == 0 && p[4095] == 0xab && p[8192] == 0xab);
    CHECK(madvise(p, 4096, MADV_WILLNEED) == 0);
    CHECK(madvise(p + 1, 4096, MADV_DONTNEED) == -1 && errno == EINVAL);
    /* A length that wraps when rounded up to a page, and advice Linux does not know. */
    CHECK(madvise(p, (size_t)-100, MADV_NORMAL) == -1 && errno == EINVAL);
    CHECK(madvise(p, 4096, 77) == -1 && errno == EINVAL);
    CHECK(mprotect(p, 4096, PROT_READ) == 0);
    CHECK(p[0] == 0xab);
    CHECK(mprotect(p, 4096, PROT_READ | PROT_WRITE) == 0);
    p[0] = 1;
    /* Raw: musl rounds the address down itself. */
    CHECK(syscall(SYS_mprotect, p + 1, 4096, PROT_READ) == -1 && errno == EINVAL);

    /* mremap: grow in place or move; contents survive. */
    unsigned char* q = mremap(p, len, 64 * 4096, MREMAP_MAYMOVE);
    CHECK(q != MAP_FAILED);
    if (q != MAP_FAILED) {
        CHECK(q[0] == 1 && q[len - 1] == 0xab && q[64 * 4096 - 1] == 0);
        q[64 * 4096 - 1] = 7;
        unsigned char* r = mremap(q, 64 * 4096, 2 * 4096, 0);
        CHECK(r == q && r[0] == 1);
        CHECK(munmap(r, 2 * 4096) == 0);
    }
    CHECK(mremap(p, 4096, 0, 0) == MAP_FAILED && errno == EINVAL);

    /* MAP_FIXED replaces; MAP_FIXED_NOREPLACE refuses. */
    unsigned char* a = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(a != MAP_FAILED);
    a[4096] = 9;
    unsigned char* b = mmap(a + 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(b == a + 4096 && b[0] == 0);
    CHECK(mmap(a, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | 0x100000 /* NOREPLACE */, -1, 0) == MAP_FAILED &&
          errno == EEXIST);
    CHECK(munmap(a, 3 * 4096) == 0);
    /* Unmapping twice is fine; the range is free again for a hinted mapping. */
    CHECK(munmap(a, 3 * 4096) == 0);
    CHECK(mmap(a, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | 0x100000, -1, 0) == a);
    CHECK(munmap(a, 4096) == 0);

    CHECK(mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL);
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_ANONYMOUS, -1, 0) == MAP_FAILED && errno == EINVAL);
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 999, 0) == MAP_FAILED && errno == EBADF);
    CHECK(munmap((void*)((uintptr_t)a + 1), 4096) == -1 && errno == EINVAL);
    /* A big reservation that is never touched costs nothing. */
    void* big = mmap(NULL, 16 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(big != MAP_FAILED && munmap(big, 16 << 20) == 0);
}

static void file_backed(const char* path) {
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    if (fd < 0) return;
    unsigned char* p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    CHECK(p != MAP_FAILED);
    if (p != MAP_FAILED) {
        int ok = 1;
        for (int i = 0; i < 5000; ++i) ok &= p[i] == i % 251;
        CHECK(ok);
        CHECK(p[5000] == 0 && p[8191] == 0);  /* the tail of the last page is zero */
        p[0] = 0xff;                          /* private: the file is untouched */
        CHECK(munmap(p, 3 * 4096) == 0);
    }
    unsigned char* q = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 4096);
    CHECK(q != MAP_FAILED && q[0] == 4096 % 251 && q[903] == 4999 % 251 && q[904] == 0);
    if (q != MAP_FAILED) munmap(q, 4096);
    unsigned char c;
    CHECK(pread(fd, &c, 1, 0) == 1 && c == 0);
    CHECK(mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fd, 100) == MAP_FAILED && errno == EINVAL);
    close(fd);
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: memory FILE\n");
        return 2;
    }
    heap();
    anonymous();
    file_backed(argv[1]);
    return finish("memory");
}
