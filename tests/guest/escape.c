/* Escape attempts: every path here leads, on the host, to a file outside the
 * sandbox or to the host's /proc, /sys or /dev. Inside vessel each must fail
 * (or at least never yield the secret). Usage: escape OUTSIDE_DIR
 * OUTSIDE_DIR is the host directory holding secret.txt ("TOP-SECRET").
 * The sandbox: --root holding abs_link -> OUTSIDE_DIR/secret.txt,
 * rel_link -> ../outside/secret.txt, dir_up -> .., dir_abs -> OUTSIDE_DIR;
 * --rw WORK:/w where WORK holds out_link -> OUTSIDE_DIR and file.txt. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char outside[512];

static const char* O(const char* name) {
    static char buf[8][1024];
    static int i;
    i = (i + 1) & 7;
    snprintf(buf[i], sizeof buf[i], "%s/%s", outside, name);
    return buf[i];
}

/* Fails the check when `path` opens and reads back the secret, or opens at all. */
static void must_not_open(const char* path, int dirfd) {
    int fd = openat(dirfd, path, O_RDONLY);
    if (fd >= 0) {
        char buf[64] = {0};
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n > 0 && strstr(buf, "TOP-SECRET")) printf("ESCAPED (read the secret): %s\n", path);
        else printf("opened (should not exist): %s\n", path);
        ++g_failures;
        close(fd);
    }
    ++g_checks;
    struct stat st;
    if (fstatat(dirfd, path, &st, 0) == 0) {
        printf("stat succeeded: %s\n", path);
        ++g_failures;
    }
    ++g_checks;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: escape OUTSIDE_DIR\n");
        return 2;
    }
    snprintf(outside, sizeof outside, "%s", argv[1]);
    const char* reads[] = {
        O("secret.txt"),
        "../outside/secret.txt",
        "../../../../../../../../outside/secret.txt",
        "/../../../../outside/secret.txt",
        "/abs_link",
        "/rel_link",
        "/dir_up/outside/secret.txt",
        "/dir_up/dir_up/dir_up/outside/secret.txt",
        "/dir_abs/secret.txt",
        "/w/out_link/secret.txt",
        "/w/../../outside/secret.txt",
        "/w/../w/../../outside/secret.txt",
        "/etc/passwd",
        "/proc/self/mem",
        "/proc/self/exe",
        "/proc/1/root/etc/passwd",
        "/proc/self/cwd/secret.txt",
        "/sys/kernel/notes",
        "/sys/class",
        "/dev/kvm",
        "/dev/mem",
        "/dev/tty",
        "/dev/sda",
        "/dev/shm",
        "/dev/pts/0",
        "/dev/fd/0",
        "/dev/stdin",
        "/dev/null/../kvm",
    };
    for (size_t i = 0; i < sizeof reads / sizeof *reads; ++i) must_not_open(reads[i], AT_FDCWD);

    /* /proc is the VM's own (thin/procfs.h), not the host's: its environ is
     * this program's. */
    extern char** environ;
    int env = open("/proc/self/environ", O_RDONLY);
    CHECK(env >= 0);
    char first[4096] = {0};
    ssize_t got = read(env, first, sizeof first - 1);
    CHECK(got >= 0 && strcmp(first, environ[0] ? environ[0] : "") == 0);
    close(env);

    /* Relative to descriptors and to a changed cwd. */
    int w = open("/w", O_RDONLY | O_DIRECTORY);
    CHECK(w >= 0);
    must_not_open("../outside/secret.txt", w);
    must_not_open("out_link/secret.txt", w);
    CHECK(chdir("/w/out_link") == -1 || open("secret.txt", O_RDONLY) == -1);
    CHECK(chdir("/") == 0);

    /* Symlinks the guest makes itself stay inside too. */
    CHECK(symlink(O("secret.txt"), "/w/made_abs") == 0);
    must_not_open("/w/made_abs", AT_FDCWD);
    CHECK(symlink("../../../../../outside/secret.txt", "/w/made_rel") == 0);
    must_not_open("/w/made_rel", AT_FDCWD);
    CHECK(symlink(outside, "/w/made_dir") == 0);
    must_not_open("/w/made_dir/secret.txt", AT_FDCWD);

    /* Writes through links must land inside the writable directory, never outside. */
    int fd = open("/w/made_dir/created.txt", O_CREAT | O_WRONLY, 0644);
    if (fd >= 0) close(fd);
    mkdir("/w/out_link/newdir", 0755);
    rename("/w/file.txt", "/w/out_link/moved.txt");
    fd = open("/w/made_abs", O_WRONLY | O_TRUNC);  /* would truncate the secret */
    if (fd >= 0) {
        (void)!write(fd, "pwned", 5);
        close(fd);
    }
    unlink("/w/out_link/secret.txt");
    /* The read-only root cannot be changed at all. */
    CHECK(open("/planted", O_CREAT | O_WRONLY, 0644) == -1 && errno == EROFS);
    CHECK(rename("/w/file.txt", "/moved.txt") == -1);
    CHECK(symlink("/x", "/newlink") == -1 && errno == EROFS);
    CHECK(rmdir("/dir_abs") == -1);
    CHECK(unlink("/abs_link") == -1 && errno == EROFS);
    return finish("escape");
}
