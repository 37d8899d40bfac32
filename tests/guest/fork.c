/* Processes: fork, vfork, clone and clone3 without CLONE_VM, wait4 and
 * waitid, exit statuses, kill between processes, SIGCHLD, pipes and shared
 * file offsets across fork, posix_spawn. Run natively and in vessel (with
 * --root /: the program opens itself).
 *
 *   fork PROGRAM-PATH        the checks
 *   fork PROGRAM-PATH exit N (posix_spawn's child) exits N */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

extern char** environ;

static volatile sig_atomic_t g_sigchld;
static void on_sigchld(int sig) {
    (void)sig;
    ++g_sigchld;
}

static int g_global = 1;

/* The child has a copy of the memory: its writes are its own. */
static void memory_is_copied(void) {
    int on_stack = 2;
    int* on_heap = malloc(sizeof *on_heap);
    *on_heap = 3;
    const pid_t parent = getpid();
    const pid_t child = fork();
    if (child == 0) {
        int ok = getppid() == parent && getpid() != parent && g_global == 1 && on_stack == 2 && *on_heap == 3;
        /* /proc/self is the child's own. */
        char link[32] = {0}, want[32], line[256] = {0};
        snprintf(want, sizeof want, "%d", (int)getpid());
        ok = ok && readlink("/proc/self", link, sizeof link - 1) > 0 && strcmp(link, want) == 0;
        const int fd = open("/proc/self/stat", O_RDONLY);
        int spid = 0, sppid = 0;
        ok = ok && fd >= 0 && read(fd, line, sizeof line - 1) > 0 &&
             sscanf(line, "%d %*s %*c %d", &spid, &sppid) == 2 && spid == getpid() && sppid == parent;
        if (fd >= 0) close(fd);
        g_global = 10, on_stack = 20, *on_heap = 30;
        ok = ok && g_global == 10 && on_stack == 20 && *on_heap == 30;
        _exit(ok ? 0 : 1);
    }
    CHECK(child > 0 && child != parent);
    int status = -1;
    CHECK(waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(g_global == 1 && on_stack == 2 && *on_heap == 3);
    free(on_heap);
}

/* Exit statuses as wait4 and waitid report them; WNOHANG; ECHILD. */
static void statuses(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    const pid_t child = fork();
    if (child == 0) {
        char c;
        (void)!read(p[0], &c, 1); /* until the parent has looked */
        _exit(7);
    }
    int status = -1;
    CHECK(waitpid(child, &status, WNOHANG) == 0); /* still running */
    CHECK(waitpid(child + 1000, &status, 0) == -1 && errno == ECHILD);
    CHECK(write(p[1], "x", 1) == 1);
    CHECK(wait4(-1, &status, 0, NULL) == child && WIFEXITED(status) && WEXITSTATUS(status) == 7);
    CHECK(wait(&status) == -1 && errno == ECHILD);
    close(p[0]);
    close(p[1]);

    const pid_t killed = fork();
    if (killed == 0) {
        raise(SIGKILL);
        _exit(0);
    }
    siginfo_t si;
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_PID, killed, &si, WEXITED | WNOWAIT) == 0); /* not reaped */
    CHECK(si.si_signo == SIGCHLD && si.si_pid == killed && si.si_code == CLD_KILLED && si.si_status == SIGKILL);
    CHECK(waitpid(killed, &status, 0) == killed && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    const pid_t exited = fork();
    if (exited == 0) exit(42); /* exit(), not _exit: atexit, stdio */
    memset(&si, 0, sizeof si);
    CHECK(waitid(P_ALL, 0, &si, WEXITED) == 0);
    CHECK(si.si_pid == exited && si.si_code == CLD_EXITED && si.si_status == 42);
}

/* A pipe between parent and child: data, then end of file once the child
 * (holding the only other write end) is gone. */
static void pipes(void) {
    int p[2];
    CHECK(pipe(p) == 0);
    const pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        const char msg[] = "from the child";
        _exit(write(p[1], msg, sizeof msg) == sizeof msg ? 0 : 1);
    }
    close(p[1]);
    char buf[64] = {0};
    size_t got = 0;
    ssize_t n;
    while ((n = read(p[0], buf + got, sizeof buf - got)) > 0) got += (size_t)n;
    CHECK(n == 0 && got == sizeof "from the child" && strcmp(buf, "from the child") == 0);
    close(p[0]);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* After fork the two share each open file description: one's read moves
 * the other's offset. */
static void shared_offsets(const char* self) {
    const int fd = open(self, O_RDONLY);
    CHECK(fd >= 0);
    const pid_t child = fork();
    if (child == 0) {
        char b[100];
        _exit(read(fd, b, sizeof b) == sizeof b ? 0 : 1);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(lseek(fd, 0, SEEK_CUR) == 100);
    close(fd);
}

/* SIGCHLD reaches a handler; kill() reaches another process. */
static void signals_between_processes(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    CHECK(sigaction(SIGCHLD, &sa, NULL) == 0);
    g_sigchld = 0;
    const pid_t sleeper = fork();
    if (sleeper == 0) {
        for (;;) pause();
    }
    CHECK(kill(sleeper, 0) == 0);
    CHECK(kill(sleeper, SIGTERM) == 0);
    int status;
    pid_t got;
    while ((got = waitpid(sleeper, &status, 0)) == -1 && errno == EINTR) {
    }
    CHECK(got == sleeper && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    CHECK(g_sigchld >= 1);
    CHECK(kill(sleeper, 0) == -1 && errno == ESRCH); /* reaped: gone */
    sa.sa_handler = SIG_DFL;
    CHECK(sigaction(SIGCHLD, &sa, NULL) == 0);
}

/* A child's timer is its own: its SIGALRM reaches the child, not the
 * parent (which would die of it). */
static volatile sig_atomic_t g_alarms;
static void on_sigalrm(int sig) {
    (void)sig;
    ++g_alarms;
}

static void child_timer(void) {
    const pid_t child = fork();
    if (child == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigalrm;
        sigaction(SIGALRM, &sa, NULL);
        struct itimerval t = {{0, 0}, {0, 50000}};
        setitimer(ITIMER_REAL, &t, NULL);
        while (!g_alarms) pause();
        _exit(9);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 9);
}

/* Process groups and sessions: a child leads a group of its own, or a new
 * session; kill and waitpid address a group. */
static void groups_and_sessions(void) {
    int status;
    const pid_t leader = fork();
    if (leader == 0) {
        int ok = setpgid(0, 0) == 0 && getpgrp() == getpid() && getpgid(0) == getpid();
        for (;;) pause();
        _exit(ok);
    }
    /* The parent sets it too (a shell does both, whichever runs first). */
    CHECK(setpgid(leader, leader) == 0 && getpgid(leader) == leader);
    CHECK(getsid(leader) == getsid(0));
    CHECK(setpgid(leader, 999999) == -1 && errno == EPERM); /* no such group in the session */
    CHECK(setpgid(999999, 0) == -1 && errno == ESRCH);      /* not a child */
    const pid_t member = fork();
    if (member == 0) {
        for (;;) pause();
    }
    CHECK(setpgid(member, leader) == 0 && getpgid(member) == leader);
    CHECK(kill(-leader, SIGTERM) == 0); /* both */
    CHECK(waitpid(-leader, &status, 0) > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    CHECK(waitpid(-leader, &status, 0) > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM);
    CHECK(waitpid(-leader, &status, WNOHANG) == -1 && errno == ECHILD);
    CHECK(kill(-leader, 0) == -1 && errno == ESRCH);

    const pid_t session = fork();
    if (session == 0) {
        const pid_t me = getpid();
        int ok = setsid() == me && getsid(0) == me && getpgrp() == me;
        ok = ok && setsid() == -1 && errno == EPERM; /* a group leader now */
        _exit(ok ? 0 : 1);
    }
    CHECK(waitpid(session, &status, 0) == session && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Credentials: a change to the current ids succeeds; root may become
 * another user (in a child, which then reads it back everywhere); anyone
 * else may not. */
static void credentials(void) {
    const uid_t uid = getuid();
    uid_t r = 1, e = 1, s = 1;
    CHECK(getresuid(&r, &e, &s) == 0 && r == uid && e == uid && s == uid);
    CHECK(setresuid(-1, uid, -1) == 0 && setuid(uid) == 0 && setreuid(-1, -1) == 0);
    CHECK(setresgid(-1, getgid(), -1) == 0);
    const pid_t child = fork();
    if (child == 0) {
        if (uid != 0) _exit(setuid(uid + 1) == -1 && errno == EPERM ? 0 : 1);
        if (setgid(4321) != 0 || setuid(1234) != 0) _exit(2);
        gid_t gr, ge, gs;
        const int ok = getuid() == 1234 && geteuid() == 1234 && getgid() == 4321 && getegid() == 4321 &&
                       getresgid(&gr, &ge, &gs) == 0 && gs == 4321 && setuid(0) == -1 && errno == EPERM;
        _exit(ok ? 0 : 3);
    }
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(getuid() == uid); /* the parent's are its own */
}

/* vfork, clone and clone3 without CLONE_VM, and posix_spawn (glibc's and
 * musl's use CLONE_VM|CLONE_VFORK). */
static void other_ways(const char* self) {
    int status;
    /* vfork's child borrows the parent's memory until it execs or exits,
     * and the parent waits for that (raw: glibc's vfork wrapper). */
    static volatile int written_by_child;
    written_by_child = 0;
    const long v = RAW0(SYS_vfork);
    if (v == 0) {
        written_by_child = 7;
        RAW1(SYS_exit, 3);
    }
    CHECK(v > 0 && written_by_child == 7);
    CHECK(v > 0 && waitpid((pid_t)v, &status, 0) == v && WIFEXITED(status) && WEXITSTATUS(status) == 3);

    const long c = RAW5(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    if (c == 0) RAW1(SYS_exit_group, 4);
    CHECK(c > 0 && waitpid((pid_t)c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 4);

    uint64_t args[8] = {0, 0, 0, 0, SIGCHLD, 0, 0, 0}; /* struct clone_args, version 0 */
    const long c3 = RAW2(SYS_clone3, args, sizeof args);
    if (c3 == 0) RAW1(SYS_exit_group, 5);
    CHECK(c3 > 0 && waitpid((pid_t)c3, &status, 0) == c3 && WIFEXITED(status) && WEXITSTATUS(status) == 5);
    CHECK(RAW2(SYS_clone3, args, 8) == -EINVAL); /* smaller than version 0 */

    /* What execvp and make ask first: X_OK from the mode bits (the jailed
     * VMM sees the guest's files on a noexec mount). */
    CHECK(access(self, X_OK) == 0);
    CHECK(access("/etc/passwd", X_OK) == -1 && errno == EACCES);
    pid_t spawned = -1;
    char* argv[] = {(char*)self, (char*)self, "exit", "6", NULL};
    CHECK(posix_spawn(&spawned, self, NULL, NULL, argv, environ) == 0);
    CHECK(spawned > 0 && waitpid(spawned, &status, 0) == spawned && WIFEXITED(status) && WEXITSTATUS(status) == 6);
    /* The child's exec failure reaches the parent (posix_spawn's child
     * writes it into the memory it shares with the parent). */
    char* missing[] = {"/nonexistent/program", NULL};
    CHECK(posix_spawn(&spawned, missing[0], NULL, NULL, missing, environ) == ENOENT);
}

/* Many processes one after another: each one's memory and vCPU come back. */
static void many(void) {
    int ok = 1;
    for (int i = 0; i < 200 && ok; ++i) {
        const pid_t child = fork();
        if (child == 0) _exit(i & 0x7f);
        int status;
        ok = child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == (i & 0x7f);
    }
    CHECK(ok);
    /* Ten alive at once. */
    pid_t kids[10];
    int p[2];
    CHECK(pipe(p) == 0);
    for (int i = 0; i < 10; ++i) {
        kids[i] = fork();
        if (kids[i] == 0) {
            char c;
            close(p[1]);
            _exit(read(p[0], &c, 1) == 0 ? i : 100); /* end of file once the parent closes */
        }
    }
    close(p[0]);
    close(p[1]);
    for (int i = 0; i < 10; ++i) {
        int status;
        CHECK(waitpid(kids[i], &status, 0) == kids[i] && WIFEXITED(status) && WEXITSTATUS(status) == i);
    }
}

/* fork PATH zombies: children that exit and are never reaped, until a fork
 * fails (at most 10); prints how many forks succeeded. */
static int zombies(void) {
    int made = 0;
    for (; made < 10; ++made) {
        const pid_t child = fork();
        if (child < 0) break;
        if (child == 0) _exit(0);
    }
    printf("zombies: %d\n", made);
    return 0;
}

int main(int argc, char** argv) {
    if (argc == 4 && strcmp(argv[2], "exit") == 0) return atoi(argv[3]);
    if (argc == 3 && strcmp(argv[2], "zombies") == 0) return zombies();
    if (argc != 2) {
        fprintf(stderr, "usage: fork PROGRAM-PATH\n");
        return 2;
    }
    memory_is_copied();
    statuses();
    pipes();
    shared_offsets(argv[1]);
    signals_between_processes();
    child_timer();
    credentials();
    groups_and_sessions();
    other_ways(argv[1]);
    many();
    return finish("fork");
}
