/* execve: errors before the point of no return, what survives an exec and
 * what does not, and `#!` scripts. The program runs itself again in stages.
 * Usage: exec start DIR   (DIR: a writable directory for the test files)
 * Each stage exits 1 at once if one of its checks failed; the last prints
 * "exec: N checks, F failed". */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static void on_usr1(int sig) { (void)sig; }

static void write_file(const char* path, const char* text, mode_t mode) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
}

static int stage_failed(void) {
    if (!g_failures) return 0;
    return finish("exec");
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: exec start DIR\n");
        return 2;
    }
    const char* self = argv[0];
    char path[4096], pid_text[32];
    if (!strcmp(argv[1], "start")) {
        const char* dir = argv[2];
        char* const none[] = {NULL};
        /* Errors leave the caller as it was. */
        CHECK(execve("/nonexistent/program", none, none) == -1 && errno == ENOENT);
        CHECK(execve("/", none, none) == -1 && errno == EACCES);
        snprintf(path, sizeof path, "%s/plain.txt", dir);
        write_file(path, "hello\n", 0644);
        CHECK(execve(path, none, none) == -1 && errno == EACCES);
        snprintf(path, sizeof path, "%s/text", dir);
        write_file(path, "hello\n", 0755);
        CHECK(execve(path, none, none) == -1 && errno == ENOEXEC);
        snprintf(path, sizeof path, "%s/orphan.sh", dir);
        write_file(path, "#!/nonexistent/interpreter\n", 0755);
        CHECK(execve(path, none, none) == -1 && errno == ENOENT);
        CHECK(syscall(SYS_execve, self, (char**)8, none) == -1 && errno == EFAULT);
        /* Hostile inputs: a 200 KB argument (over MAX_ARG_STRLEN), an ELF
         * header with garbage after it. */
        char* big = malloc(200000);
        memset(big, 'x', 199999);
        big[199999] = 0;
        char* big_argv[] = {big, NULL};
        CHECK(execve(self, big_argv, none) == -1 && errno == E2BIG);
        free(big);
        snprintf(path, sizeof path, "%s/garbage", dir);
        write_file(path, "\177ELF\2\1\1\0garbage-garbage-garbage-garbage-garbage-garbage-garbage", 0755);
        CHECK(execve(path, none, none) == -1 && errno == ENOEXEC);
        snprintf(path, sizeof path, "%s/link", dir);
        CHECK(symlink(self, path) == 0);
        CHECK(syscall(SYS_execveat, AT_FDCWD, path, none, none, AT_SYMLINK_NOFOLLOW) == -1 && errno == ELOOP);
        CHECK(syscall(SYS_execveat, 99, "", none, none, AT_EMPTY_PATH) == -1 && errno == EBADF);
        CHECK(syscall(SYS_execveat, AT_FDCWD, self, none, none, 0x8000) == -1 && errno == EINVAL);
        if (stage_failed()) return 1;

        /* State for the next stage to look at. */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_usr1;
        CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
        CHECK(signal(SIGUSR2, SIG_IGN) != SIG_ERR);
        sigset_t hup;
        sigemptyset(&hup);
        sigaddset(&hup, SIGHUP);
        CHECK(sigprocmask(SIG_BLOCK, &hup, NULL) == 0);
        CHECK(raise(SIGHUP) == 0);
        CHECK(dup3(1, 10, O_CLOEXEC) == 10 && dup2(1, 11) == 11);
        snprintf(pid_text, sizeof pid_text, "%d", (int)getpid());
        char* args[] = {(char*)self, "after", (char*)dir, pid_text, NULL};
        char* env[] = {"EXEC_TEST=kept", NULL};
        execve(self, args, env);
        CHECK(0); /* not reached */
        return finish("exec");
    }
    if (!strcmp(argv[1], "after") && argc == 4) {
        CHECK(getpid() == atoi(argv[3])); /* the same process */
        CHECK(getenv("EXEC_TEST") && !strcmp(getenv("EXEC_TEST"), "kept") && !getenv("PATH"));
        struct sigaction now;
        CHECK(sigaction(SIGUSR1, NULL, &now) == 0 && now.sa_handler == SIG_DFL);
        CHECK(sigaction(SIGUSR2, NULL, &now) == 0 && now.sa_handler == SIG_IGN);
        sigset_t mask, pending;
        CHECK(sigprocmask(SIG_BLOCK, NULL, &mask) == 0 && sigismember(&mask, SIGHUP) == 1);
        CHECK(sigpending(&pending) == 0 && sigismember(&pending, SIGHUP) == 1);
        CHECK(fcntl(10, F_GETFD) == -1 && errno == EBADF); /* close-on-exec */
        CHECK(fcntl(11, F_GETFD) == 0);
        char comm[32] = {0};
        int fd = open("/proc/self/comm", O_RDONLY);
        CHECK(fd >= 0 && read(fd, comm, sizeof comm - 1) > 0);
        close(fd);
        const char* base = strrchr(self, '/') ? strrchr(self, '/') + 1 : self;
        CHECK(!strncmp(comm, base, strlen(comm) - 1));
        if (stage_failed()) return 1;
        /* A script whose interpreter is this program, with one argument. */
        snprintf(path, sizeof path, "%s/again.sh", argv[2]);
        char line[4200];
        snprintf(line, sizeof line, "#!%s  script-arg  \necho never\n", self);
        write_file(path, line, 0755);
        char* args[] = {"ignored-argv0", "last", NULL};
        char* env[] = {NULL};
        execve(path, args, env);
        CHECK(0);
        return finish("exec");
    }
    if (!strcmp(argv[1], "script-arg")) {
        /* interpreter, its argument, the script's path, then argv[1] on. */
        CHECK(argc == 4);
        CHECK(argc > 3 && strstr(argv[2], "/again.sh") && !strcmp(argv[3], "last"));
        return finish("exec");
    }
    fprintf(stderr, "exec: unknown stage %s\n", argv[1]);
    return 2;
}
