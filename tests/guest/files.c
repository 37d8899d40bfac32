/* File-system calls: read/write family, open/close/lseek, the stat family,
 * getdents64, readlink, access, cwd, mkdir/unlink/rmdir/rename, ftruncate,
 * fsync, umask. Usage: files WORKDIR DATADIR [vessel]
 *   WORKDIR: an empty writable directory; DATADIR: holds hello.txt
 *   ("hello world\n"), sub/a.txt ("A\n") and link -> hello.txt. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "check.h"

/* struct statx as the kernel defines it (musl 1.2.3 has none). */
struct kstatx {
    unsigned int stx_mask, stx_blksize;
    unsigned long long stx_attributes;
    unsigned int stx_nlink, stx_uid, stx_gid;
    unsigned short stx_mode, pad1;
    unsigned long long stx_ino, stx_size, stx_blocks, stx_attributes_mask;
    long long times[8];
    unsigned int stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
    unsigned long long spare[14];
};
#define KSTATX_SIZE 0x00000200U
#define KSTATX_TYPE 0x00000001U

static char work[512], data[512];
/* An unmapped address, hidden from the compiler so it does not warn. */
static void* volatile bad_ptr = (void*)8;

static const char* W(const char* name) {
    static char buf[4][1024];
    static int i;
    i = (i + 1) & 3;
    snprintf(buf[i], sizeof buf[i], "%s/%s", work, name);
    return buf[i];
}
static const char* D(const char* name) {
    static char buf[4][1024];
    static int i;
    i = (i + 1) & 3;
    snprintf(buf[i], sizeof buf[i], "%s/%s", data, name);
    return buf[i];
}

static void read_write(void) {
    int fd = open(W("rw.txt"), O_CREAT | O_RDWR | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "0123456789", 10) == 10);
    CHECK(lseek(fd, 0, SEEK_CUR) == 10);
    CHECK(lseek(fd, 2, SEEK_SET) == 2);
    char buf[32] = {0};
    CHECK(read(fd, buf, 3) == 3 && memcmp(buf, "234", 3) == 0);
    CHECK(lseek(fd, -1, SEEK_END) == 9);
    CHECK(read(fd, buf, sizeof buf) == 1 && buf[0] == '9');
    CHECK(read(fd, buf, sizeof buf) == 0); /* EOF */
    CHECK(lseek(fd, -100, SEEK_SET) == -1 && errno == EINVAL);

    /* pread/pwrite leave the offset alone. */
    off_t before = lseek(fd, 0, SEEK_CUR);
    CHECK(pwrite(fd, "AB", 2, 4) == 2);
    memset(buf, 0, sizeof buf);
    CHECK(pread(fd, buf, 4, 3) == 4 && memcmp(buf, "3AB6", 4) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == before);
    CHECK(syscall(SYS_pread64, fd, buf, 2, -1L) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_pwrite64, fd, "x", 1, 20L) == 1); /* past EOF: a hole */
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 21);

    /* readv/writev scatter and gather. */
    CHECK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0);
    struct iovec out[3] = {{"ab", 2}, {"", 0}, {"cdef", 4}};
    CHECK(writev(fd, out, 3) == 6);
    CHECK(syscall(SYS_writev, fd, out, 3) == 6);
    CHECK(lseek(fd, 0, SEEK_SET) == 0);
    char x[3] = {0}, y[5] = {0}, z[20] = {0};
    struct iovec in[3] = {{x, 2}, {y, 4}, {z, sizeof z}};
    CHECK(syscall(SYS_readv, fd, in, 3) == 12);
    CHECK(memcmp(x, "ab", 2) == 0 && memcmp(y, "cdef", 4) == 0 && memcmp(z, "abcdef", 6) == 0);
    CHECK(readv(fd, in, 3) == 0);
    struct iovec bad = {(void*)8, 4}; /* unmapped buffer */
    CHECK(lseek(fd, 0, SEEK_SET) == 0 && readv(fd, &bad, 1) == -1 && errno == EFAULT);
    CHECK(read(fd, bad_ptr, 4) == -1 && errno == EFAULT);
    CHECK(write(fd, bad_ptr, 4) == -1 && errno == EFAULT);
    CHECK(fsync(fd) == 0);
    CHECK(syscall(SYS_fsync, fd) == 0);
    CHECK(ftruncate(fd, 3) == 0 && fstat(fd, &st) == 0 && st.st_size == 3);
    CHECK(syscall(SYS_ftruncate, fd, -1L) == -1 && errno == EINVAL);
    CHECK(close(fd) == 0);
    CHECK(close(fd) == -1 && errno == EBADF);
    CHECK(read(fd, buf, 1) == -1 && errno == EBADF);
    CHECK(write(9999, "x", 1) == -1 && errno == EBADF);
}

static void opening(int vessel) {
    /* Raw open(2) and openat(2), not only libc's openat-based open(). */
    int fd = (int)syscall(SYS_open, D("hello.txt"), O_RDONLY);
    CHECK(fd >= 0);
    char buf[64] = {0};
    CHECK(read(fd, buf, sizeof buf) == 12 && strcmp(buf, "hello world\n") == 0);
    close(fd);
    int dfd = open(data, O_RDONLY | O_DIRECTORY);
    CHECK(dfd >= 0);
    fd = (int)syscall(SYS_openat, dfd, "sub/a.txt", O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, sizeof buf) == 2 && buf[0] == 'A');
    close(fd);
    CHECK(openat(dfd, "missing", O_RDONLY) == -1 && errno == ENOENT);
    CHECK(openat(dfd, "hello.txt/x", O_RDONLY) == -1 && errno == ENOTDIR);
    CHECK(openat(dfd, "hello.txt", O_RDONLY | O_DIRECTORY) == -1 && errno == ENOTDIR);
    CHECK(openat(dfd, "link", O_RDONLY | O_NOFOLLOW) == -1 && errno == ELOOP);
    fd = openat(dfd, "link", O_RDONLY);
    CHECK(fd >= 0 && read(fd, buf, 5) == 5 && memcmp(buf, "hello", 5) == 0);
    close(fd);
    CHECK(read(dfd, buf, 1) == -1 && errno == EISDIR);
    close(dfd);
    CHECK(open("", O_RDONLY) == -1 && errno == ENOENT);
    CHECK(open((char*)8, O_RDONLY) == -1 && errno == EFAULT);

    fd = open(W("excl"), O_CREAT | O_EXCL | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    CHECK(open(W("excl"), O_CREAT | O_EXCL | O_WRONLY, 0600) == -1 && errno == EEXIST);
    fd = open(W("excl"), O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, "1", 1) == 1 && lseek(fd, 0, SEEK_SET) == 0 && write(fd, "2", 1) == 1);
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 2); /* O_APPEND wrote at the end both times */
    close(fd);
    fd = open(W("excl"), O_RDONLY);
    CHECK(write(fd, "x", 1) == -1 && errno == EBADF);
    close(fd);
    if (vessel) {
        /* The root is read-only whatever the host permissions say. */
        CHECK(open(D("hello.txt"), O_WRONLY) == -1 && errno == EROFS);
        CHECK(open(D("new.txt"), O_CREAT | O_WRONLY, 0644) == -1 && errno == EROFS);
        CHECK(mkdir(D("newdir"), 0755) == -1 && errno == EROFS);
        CHECK(unlink(D("hello.txt")) == -1 && errno == EROFS);
        CHECK(access(D("hello.txt"), W_OK) == -1 && errno == EROFS);
        CHECK(access(D("hello.txt"), R_OK) == 0);
    }
}

static void stats(void) {
    struct stat st, st2;
    CHECK(syscall(SYS_stat, D("hello.txt"), &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 12);
    CHECK(syscall(SYS_stat, D("link"), &st2) == 0 && st2.st_ino == st.st_ino);
    CHECK(syscall(SYS_lstat, D("link"), &st2) == 0 && S_ISLNK(st2.st_mode) && st2.st_size == 9);
    CHECK(syscall(SYS_stat, D("missing"), &st) == -1 && errno == ENOENT);
    CHECK(syscall(SYS_stat, D("hello.txt/"), &st) == -1 && errno == ENOTDIR);
    CHECK(syscall(SYS_stat, D("sub/"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(stat(D("sub/.."), &st) == 0 && S_ISDIR(st.st_mode));
    int fd = open(D("hello.txt"), O_RDONLY);
    CHECK(syscall(SYS_fstat, fd, &st) == 0 && st.st_size == 12);
    CHECK(syscall(SYS_fstat, 4321, &st) == -1 && errno == EBADF);
    CHECK(syscall(SYS_fstat, fd, (void*)8) == -1 && errno == EFAULT);
    int dfd = open(data, O_RDONLY | O_DIRECTORY);
    CHECK(syscall(SYS_newfstatat, dfd, "hello.txt", &st, 0) == 0 && st.st_size == 12);
    CHECK(syscall(SYS_newfstatat, dfd, "link", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode));
    CHECK(syscall(SYS_newfstatat, fd, "", &st, AT_EMPTY_PATH) == 0 && st.st_size == 12);
    CHECK(syscall(SYS_newfstatat, fd, "", &st, 0) == -1 && errno == ENOENT);
    CHECK(syscall(SYS_newfstatat, fd, "x", &st, 0) == -1 && errno == ENOTDIR);
    CHECK(syscall(SYS_newfstatat, dfd, "hello.txt", &st, 0x12345) == -1 && errno == EINVAL);
    struct kstatx sx;
    memset(&sx, 0, sizeof sx);
    CHECK(syscall(SYS_statx, dfd, "hello.txt", 0, KSTATX_SIZE | KSTATX_TYPE, &sx) == 0);
    CHECK((sx.stx_mask & KSTATX_SIZE) && sx.stx_size == 12 && S_ISREG(sx.stx_mode));
    CHECK(syscall(SYS_statx, AT_FDCWD, D("link"), AT_SYMLINK_NOFOLLOW, KSTATX_TYPE, &sx) == 0 && S_ISLNK(sx.stx_mode));
    CHECK(syscall(SYS_statx, fd, "", AT_EMPTY_PATH, KSTATX_SIZE, &sx) == 0 && sx.stx_size == 12);
    CHECK(syscall(SYS_statx, dfd, "nope", 0, KSTATX_SIZE, &sx) == -1 && errno == ENOENT);
    close(fd);
    close(dfd);
}

static void dirents(void) {
    /* readdir() uses getdents64. */
    DIR* d = opendir(data);
    CHECK(d != NULL);
    int seen = 0;
    struct dirent* e;
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, "hello.txt")) {
            seen |= 1;
            CHECK(e->d_type == DT_REG);
        }
        if (!strcmp(e->d_name, "sub")) {
            seen |= 2;
            CHECK(e->d_type == DT_DIR);
        }
        if (!strcmp(e->d_name, "link")) {
            seen |= 4;
            CHECK(e->d_type == DT_LNK);
        }
        if (!strcmp(e->d_name, ".")) seen |= 8;
        if (!strcmp(e->d_name, "..")) seen |= 16;
    }
    CHECK(seen == 31);
    if (d) closedir(d);
    int fd = open(data, O_RDONLY | O_DIRECTORY);
    char buf[4096];
    long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
    CHECK(n > 0);
    CHECK(syscall(SYS_getdents64, fd, buf, sizeof buf) == 0); /* end of directory */
    CHECK(lseek(fd, 0, SEEK_SET) == 0 && syscall(SYS_getdents64, fd, buf, sizeof buf) == n);
    CHECK(lseek(fd, 0, SEEK_SET) == 0 && syscall(SYS_getdents64, fd, buf, 8) == -1 && errno == EINVAL);
    close(fd);
    fd = open(D("hello.txt"), O_RDONLY);
    CHECK(syscall(SYS_getdents64, fd, buf, sizeof buf) == -1 && errno == ENOTDIR);
    close(fd);
}

static void links(void) {
    char buf[64];
    memset(buf, 0, sizeof buf);
    CHECK(syscall(SYS_readlink, D("link"), buf, sizeof buf) == 9 && memcmp(buf, "hello.txt", 9) == 0);
    CHECK(syscall(SYS_readlink, D("link"), buf, 4) == 4 && memcmp(buf, "hell", 4) == 0); /* truncated */
    CHECK(syscall(SYS_readlink, D("hello.txt"), buf, sizeof buf) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_readlink, D("link"), buf, 0) == -1 && errno == EINVAL);
    int dfd = open(data, O_RDONLY | O_DIRECTORY);
    memset(buf, 0, sizeof buf);
    CHECK(syscall(SYS_readlinkat, dfd, "link", buf, sizeof buf) == 9 && strcmp(buf, "hello.txt") == 0);
    CHECK(readlinkat(dfd, "missing", buf, sizeof buf) == -1 && errno == ENOENT);
    CHECK(syscall(SYS_access, D("hello.txt"), R_OK) == 0);
    CHECK(syscall(SYS_access, D("missing"), F_OK) == -1 && errno == ENOENT);
    CHECK(syscall(SYS_access, D("hello.txt"), 0x40) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_faccessat, dfd, "sub/a.txt", R_OK) == 0);
    CHECK(faccessat(dfd, "link", F_OK, AT_SYMLINK_NOFOLLOW) == 0);
    CHECK(syscall(SYS_faccessat, dfd, "nope", F_OK) == -1 && errno == ENOENT);
    close(dfd);
}

static void directories(void) {
    char cwd[512], buf[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(syscall(SYS_chdir, data) == 0);
    CHECK(syscall(SYS_getcwd, buf, sizeof buf) == (long)strlen(data) + 1 && strcmp(buf, data) == 0);
    CHECK(syscall(SYS_getcwd, buf, 2) == -1 && errno == ERANGE);
    int fd = open("hello.txt", O_RDONLY); /* relative to the new cwd */
    CHECK(fd >= 0);
    close(fd);
    CHECK(chdir("sub") == 0 && access("a.txt", R_OK) == 0);
    CHECK(chdir("..") == 0 && getcwd(buf, sizeof buf) && strcmp(buf, data) == 0);
    CHECK(chdir("hello.txt") == -1 && errno == ENOTDIR);
    CHECK(chdir("missing") == -1 && errno == ENOENT);
    CHECK(chdir(work) == 0);

    CHECK(syscall(SYS_mkdir, W("d1"), 0755) == 0);
    CHECK(syscall(SYS_mkdir, W("d1"), 0755) == -1 && errno == EEXIST);
    int wfd = open(work, O_RDONLY | O_DIRECTORY);
    CHECK(syscall(SYS_mkdirat, wfd, "d1/d2", 0700) == 0);
    struct stat st;
    CHECK(stat(W("d1/d2"), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    CHECK(mkdirat(wfd, "nope/d3", 0755) == -1 && errno == ENOENT);
    CHECK(syscall(SYS_rmdir, W("d1")) == -1 && errno == ENOTEMPTY);
    CHECK(syscall(SYS_unlinkat, wfd, "d1/d2", 0x200 /* AT_REMOVEDIR */) == 0);
    CHECK(syscall(SYS_rmdir, W("d1")) == 0);
    CHECK(syscall(SYS_rmdir, W("d1")) == -1 && errno == ENOENT);

    fd = open(W("f1"), O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && write(fd, "f1", 2) == 2);
    close(fd);
    CHECK(syscall(SYS_rmdir, W("f1")) == -1 && errno == ENOTDIR);
    CHECK(syscall(SYS_rename, W("f1"), W("f2")) == 0);
    CHECK(access(W("f1"), F_OK) == -1 && errno == ENOENT);
    CHECK(syscall(SYS_renameat, wfd, "f2", wfd, "f3") == 0);
    CHECK(rename(W("f3"), W("missing/f4")) == -1 && errno == ENOENT);
    CHECK(mkdir(W("d5"), 0755) == 0 && rename(W("f3"), W("d5/f5")) == 0);
    CHECK(stat(W("d5/f5"), &st) == 0 && st.st_size == 2);
    CHECK(syscall(SYS_unlink, W("d5")) == -1 && (errno == EISDIR || errno == EPERM));
    CHECK(syscall(SYS_unlink, W("d5/f5")) == 0);
    CHECK(syscall(SYS_unlinkat, wfd, "d5/f5", 0) == -1 && errno == ENOENT);
    CHECK(syscall(SYS_unlinkat, wfd, "d5", 0x200) == 0);
    CHECK(syscall(SYS_unlinkat, wfd, "x", 0x1) == -1 && errno == EINVAL);
    close(wfd);

    /* umask applies to creation modes. */
    mode_t old = umask(077);
    CHECK(syscall(SYS_umask, 022) == 077);
    umask(027);
    fd = open(W("masked"), O_CREAT | O_WRONLY, 0666);
    CHECK(fd >= 0 && fstat(fd, &st) == 0 && (st.st_mode & 0777) == 0640);
    close(fd);
    CHECK(mkdir(W("mdir"), 0777) == 0 && stat(W("mdir"), &st) == 0 && (st.st_mode & 0777) == 0750);
    umask(old);
    CHECK(chdir(cwd) == 0);
}

/* statfs and fstatfs: the same file system either way; inside vessel the
 * read-only --root says so (ST_RDONLY), the --rw directory does not. */
static void file_systems(int vessel) {
    char path[600];
    struct statfs by_path, by_fd, rw;
    snprintf(path, sizeof path, "%s/hello.txt", data);
    CHECK(statfs(path, &by_path) == 0);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(fstatfs(fd, &by_fd) == 0);
    CHECK(by_fd.f_type == by_path.f_type && by_fd.f_bsize == by_path.f_bsize && by_fd.f_bsize > 0);
    CHECK(by_fd.f_flags == by_path.f_flags);
    close(fd);
    CHECK(statfs(work, &rw) == 0);
    CHECK(!(rw.f_flags & ST_RDONLY));
    if (vessel) CHECK(by_path.f_flags & ST_RDONLY);
    errno = 0;
    CHECK(statfs("/no/such/file", &rw) == -1 && errno == ENOENT);
    errno = 0;
    CHECK(fstatfs(12345, &rw) == -1 && errno == EBADF);
    errno = 0;
    CHECK(syscall(SYS_statfs, path, bad_ptr) == -1 && errno == EFAULT);

    /* posix_fadvise: a hint, checked as Linux checks it. */
    fd = open(path, O_RDONLY);
    CHECK(posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL) == 0);
    CHECK(posix_fadvise(fd, 0, 0, 99) == EINVAL);
    CHECK(posix_fadvise(fd, 0, -1, POSIX_FADV_NORMAL) == EINVAL);
    close(fd);
    CHECK(posix_fadvise(12345, 0, 0, POSIX_FADV_NORMAL) == EBADF);
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    CHECK(posix_fadvise(pfd[0], 0, 0, POSIX_FADV_NORMAL) == ESPIPE);
    close(pfd[0]);
    close(pfd[1]);
}

/* fallocate, the positional vectored calls, sendfile and copy_file_range. */
static void transfers(void) {
    char path[600], copy[600], buf[16] = {0}, more[16] = {0};
    snprintf(path, sizeof path, "%s/transfers.txt", work);
    snprintf(copy, sizeof copy, "%s/transfers-copy.txt", work);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    struct stat st;
    CHECK(fallocate(fd, 0, 0, 8192) == 0 && fstat(fd, &st) == 0 && st.st_size == 8192);
    CHECK(fallocate(fd, FALLOC_FL_KEEP_SIZE, 8192, 4096) == 0 && fstat(fd, &st) == 0 && st.st_size == 8192);
    CHECK(ftruncate(fd, 0) == 0);
    struct iovec out[2] = {{"hello ", 6}, {"world\n", 6}};
    CHECK(pwritev(fd, out, 2, 0) == 12);
    CHECK(lseek(fd, 0, SEEK_CUR) == 0); /* positional: the position stays */
    struct iovec in[2] = {{buf, 5}, {more, 7}};
    CHECK(preadv(fd, in, 2, 0) == 12 && !memcmp(buf, "hello", 5) && !memcmp(more, " world\n", 7));
    errno = 0;
    CHECK(preadv(fd, in, 2, -5) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(preadv(fd, in, 2, INT64_MAX - 5) == -1 && errno == EINVAL); /* the range would pass the end of off_t */
    struct iovec one = {buf, 6};
    CHECK(syscall(SYS_preadv2, fd, &one, 1, -1L, 0L, 0) == 6 &&
          lseek(fd, 0, SEEK_CUR) == 6);                         /* -1: the position, moved */
    CHECK(syscall(SYS_pwritev2, fd, &one, 1, 12L, 0L, 0) == 6); /* musl has no wrappers */
    /* sendfile into a pipe: with an offset the position stays and the offset moves. */
    int pfd[2];
    CHECK(pipe(pfd) == 0);
    off_t off = 6;
    CHECK(sendfile(pfd[1], fd, &off, 5) == 5 && off == 11 && lseek(fd, 0, SEEK_CUR) == 6);
    CHECK(sendfile(pfd[1], fd, NULL, 3) == 3 && lseek(fd, 0, SEEK_CUR) == 9);
    char piped[16] = {0};
    CHECK(read(pfd[0], piped, sizeof piped) == 8 && !memcmp(piped, "worldwor", 8));
    errno = 0;
    CHECK(sendfile(pfd[1], 555, NULL, 3) == -1 && errno == EBADF);
    close(pfd[0]);
    close(pfd[1]);
    /* copy_file_range from offset 0 of one file to offset 2 of another. */
    int to = open(copy, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(to >= 0);
    loff_t from_off = 0, to_off = 2;
    CHECK(copy_file_range(fd, &from_off, to, &to_off, 5, 0) == 5 && from_off == 5 && to_off == 7);
    errno = 0;
    CHECK(copy_file_range(fd, &from_off, to, &to_off, 5, 1) == -1 && errno == EINVAL);
    char got[8] = {0};
    CHECK(pread(to, got, sizeof got, 0) == 7 && !memcmp(got, "\0\0hello", 7));
    close(to);
    close(fd);
}

/* flock: an exclusive lock keeps a second open file description out until
 * it is released; the argument checks. */
static void locks(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/lock.txt", work);
    int a = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644), b = open(path, O_RDONLY);
    CHECK(a >= 0 && b >= 0);
    CHECK(flock(a, LOCK_EX) == 0);
    errno = 0;
    CHECK(flock(b, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK);
    CHECK(flock(a, LOCK_UN) == 0);
    CHECK(flock(b, LOCK_SH | LOCK_NB) == 0);
    CHECK(flock(a, LOCK_SH | LOCK_NB) == 0); /* shared with b */
    errno = 0;
    CHECK(flock(a, LOCK_NB) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(flock(a, 0x1000 | LOCK_EX) == -1 && errno == EINVAL);
    CHECK(flock(a, 32 | LOCK_EX) == 0); /* LOCK_MAND: ignored, a success */
    errno = 0;
    CHECK(flock(555, LOCK_EX) == -1 && errno == EBADF);
    close(a);
    close(b);
}

/* Extended attributes: none to be found on a fresh file (natively too, on
 * the test's tmpfs); in vessel the list is empty and changes are refused. */
static void xattrs(int vessel) {
    char path[600], buf[64];
    snprintf(path, sizeof path, "%s/xattr.txt", work);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    close(fd);
    errno = 0;
    CHECK(getxattr(path, "security.nothing", buf, sizeof buf) == -1 && errno == ENODATA);
    errno = 0;
    CHECK(lgetxattr(path, "security.nothing", buf, sizeof buf) == -1 && errno == ENODATA);
    errno = 0;
    CHECK(getxattr("/no/such/file", "security.nothing", buf, sizeof buf) == -1 && errno == ENOENT);
    errno = 0;
    CHECK(getxattr(path, "", buf, sizeof buf) == -1 && errno == ERANGE);
    fd = open(path, O_RDONLY);
    errno = 0;
    CHECK(fgetxattr(fd, "security.nothing", buf, sizeof buf) == -1 && errno == ENODATA);
    close(fd);
    errno = 0;
    CHECK(fgetxattr(12345, "security.nothing", buf, sizeof buf) == -1 && errno == EBADF);
    if (vessel) {
        CHECK(listxattr(path, buf, sizeof buf) == 0 && llistxattr(path, NULL, 0) == 0);
        errno = 0;
        CHECK(setxattr(path, "user.a", "1", 1, 0) == -1 && errno == EOPNOTSUPP);
        errno = 0;
        CHECK(removexattr(path, "user.a") == -1 && errno == EOPNOTSUPP);
    }
    unlink(path);
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: files WORKDIR DATADIR [vessel]\n");
        return 2;
    }
    snprintf(work, sizeof work, "%s", argv[1]);
    snprintf(data, sizeof data, "%s", argv[2]);
    int vessel = argc > 3 && !strcmp(argv[3], "vessel");
    read_write();
    opening(vessel);
    stats();
    dirents();
    links();
    directories();
    file_systems(vessel);
    xattrs(vessel);
    locks();
    transfers();
    return finish("files");
}
