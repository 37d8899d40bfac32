/* Process, identity, signal-state, limits and system-information calls, and
 * -ENOSYS for what is not supported.
 * Usage: process UID GID [vessel]   or   process exit N   or   process exit_group N
 *        or   process unsupported N (two calls Vessel lacks, then exit N)
 *        or   process big-alloc MIB (exit 0 if a MIB MiB allocation works, else 3) */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/times.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define ARCH_SET_FS 0x1002
#define ARCH_GET_FS 0x1003
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_PRIVATE 128

/* The kernel's sigaction layout (not libc's). */
struct ksigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

static void on_usr1(int sig) { (void)sig; }

static void identity(long uid, long gid, int vessel) {
    long pid = syscall(SYS_getpid);
    CHECK(pid > 0 && pid == getpid());
    CHECK(syscall(SYS_gettid) == pid); /* single-threaded: tid == pid */
    CHECK(syscall(SYS_getppid) >= 0);
    CHECK(syscall(SYS_getuid) == uid && syscall(SYS_geteuid) == uid);
    CHECK(syscall(SYS_getgid) == gid && syscall(SYS_getegid) == gid);
    int tid_word;
    CHECK(syscall(SYS_set_tid_address, &tid_word) == pid);
    long head[3] = {0, 0, 0};
    head[0] = (long)head;
    CHECK(syscall(SYS_set_robust_list, head, 24) == 0);
    CHECK(syscall(SYS_set_robust_list, head, 23) == -1 && errno == EINVAL);
    struct utsname u;
    CHECK(syscall(SYS_uname, &u) == 0 && strcmp(u.sysname, "Linux") == 0 && strcmp(u.machine, "x86_64") == 0);
    CHECK(u.release[0] >= '3' && u.release[0] <= '9');
    if (vessel) {
        CHECK(pid == 1);
        CHECK(strcmp(u.nodename, "vessel") == 0);
    }
}

static void signals(void) {
    struct ksigaction act, old;
    memset(&act, 0, sizeof act);
    act.handler = on_usr1;
    act.flags = 0x04000000; /* SA_RESTORER */
    act.restorer = (void (*)(void))0x1234;
    act.mask = 1u << 2;
    CHECK(syscall(SYS_rt_sigaction, SIGUSR1, &act, NULL, 8) == 0);
    memset(&old, 0, sizeof old);
    CHECK(syscall(SYS_rt_sigaction, SIGUSR1, NULL, &old, 8) == 0);
    CHECK(old.handler == on_usr1 && old.mask == (1u << 2) && (old.flags & 0x04000000));
    CHECK(syscall(SYS_rt_sigaction, SIGKILL, &act, NULL, 8) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_rt_sigaction, SIGUSR1, &act, NULL, 4) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_rt_sigaction, 65, &act, NULL, 8) == -1 && errno == EINVAL);
    struct sigaction sa, osa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    CHECK(sigaction(SIGPIPE, &sa, NULL) == 0 && sigaction(SIGPIPE, NULL, &osa) == 0 && osa.sa_handler == SIG_IGN);

    uint64_t set = (1ull << (SIGUSR2 - 1)) | (1ull << (SIGKILL - 1)), cur = 0;
    CHECK(syscall(SYS_rt_sigprocmask, SIG_SETMASK, NULL, &cur, 8) == 0);
    uint64_t orig = cur;
    CHECK(syscall(SYS_rt_sigprocmask, SIG_BLOCK, &set, NULL, 8) == 0);
    CHECK(syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &cur, 8) == 0);
    /* SIGKILL cannot be blocked. */
    CHECK((cur & (1ull << (SIGUSR2 - 1))) && !(cur & (1ull << (SIGKILL - 1))));
    CHECK(syscall(SYS_rt_sigprocmask, SIG_UNBLOCK, &set, &cur, 8) == 0);
    CHECK(syscall(SYS_rt_sigprocmask, SIG_SETMASK, &orig, &cur, 8) == 0 && cur == orig);
    CHECK(syscall(SYS_rt_sigprocmask, 7, &set, NULL, 8) == -1 && errno == EINVAL);
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    CHECK(sigprocmask(SIG_BLOCK, &ss, NULL) == 0);
    sigemptyset(&ss);
    CHECK(sigprocmask(SIG_BLOCK, NULL, &ss) == 0 && sigismember(&ss, SIGINT));

    static char altstack[16384];
    stack_t st = {.ss_sp = altstack, .ss_flags = 0, .ss_size = sizeof altstack}, ost;
    CHECK(syscall(SYS_sigaltstack, &st, NULL) == 0);
    memset(&ost, 0, sizeof ost);
    CHECK(syscall(SYS_sigaltstack, NULL, &ost) == 0 && ost.ss_sp == altstack && ost.ss_size == sizeof altstack);
    stack_t tiny = {.ss_sp = altstack, .ss_flags = 0, .ss_size = 100};
    CHECK(syscall(SYS_sigaltstack, &tiny, NULL) == -1 && errno == ENOMEM);
    stack_t off = {.ss_flags = SS_DISABLE};
    CHECK(syscall(SYS_sigaltstack, &off, NULL) == 0 && syscall(SYS_sigaltstack, NULL, &ost) == 0 &&
          (ost.ss_flags & SS_DISABLE));
}

static void thread_pointer(void) {
    /* Read FS, point it elsewhere, read back and restore — with raw calls only,
     * because libc's errno lives behind FS. */
    static uint64_t fake_tls[64];
    uint64_t orig = 0, now = 0;
    long r1 = RAW2(SYS_arch_prctl, ARCH_GET_FS, &orig);
    long r2 = RAW2(SYS_arch_prctl, ARCH_SET_FS, fake_tls);
    long r3 = RAW2(SYS_arch_prctl, ARCH_GET_FS, &now);
    uint64_t seen;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(seen)); /* the CPU uses the new base */
    fake_tls[0] = 0;
    long r4 = RAW2(SYS_arch_prctl, ARCH_SET_FS, orig);
    CHECK(r1 == 0 && r2 == 0 && r3 == 0 && r4 == 0);
    CHECK(orig != 0 && now == (uint64_t)fake_tls);
    (void)seen;
    CHECK(RAW2(SYS_arch_prctl, 0x9999, 0) == -EINVAL);
    CHECK(RAW2(SYS_arch_prctl, ARCH_SET_FS, 0xffff800000000000ull) == -EPERM);
    uint64_t check = 0;
    CHECK(RAW2(SYS_arch_prctl, ARCH_GET_FS, &check) == 0 && check == orig);
    /* User-mode RDFSBASE/WRFSBASE are offered as the host offers them
     * (HOST_HWCAP2: the host's AT_HWCAP2, given by the test). */
    const char* host = getenv("HOST_HWCAP2");
    if (host) CHECK((getauxval(AT_HWCAP2) & 2) == (strtoul(host, NULL, 0) & 2));
}

/* readlink("/proc/self/exe") through glibc's own string, which the
 * guest-side entry answers without an exit while the string is there and
 * read-only. Inside vessel the guest's /proc has no such entry: ENOENT,
 * however it is answered; and a changed string must be seen. */
static const char kSelfExe[] = "/proc/self/exe";

static long raw_readlink(const char* path, char* buf, unsigned long n) { return RAW3(SYS_readlink, path, buf, n); }

static void self_exe(int vessel) {
    char buf[256];
    if (!vessel) {
        CHECK(raw_readlink(kSelfExe, buf, sizeof buf) > 0);
        return;
    }
    CHECK(raw_readlink(kSelfExe, buf, sizeof buf) == -ENOENT);
    char copy[sizeof kSelfExe];
    memcpy(copy, kSelfExe, sizeof copy);
    CHECK(raw_readlink(copy, buf, sizeof buf) == -ENOENT); /* another address: the VMM */
    CHECK(raw_readlink(NULL, buf, sizeof buf) == -EFAULT);
    /* The string changed (after making its page writable): the answer
     * follows it, also once the page is read-only again. The page keeps
     * execute permission: musl puts read-only data in its code segment. */
    char* page = (char*)((uintptr_t)kSelfExe & ~(uintptr_t)4095);
    size_t span = ((uintptr_t)kSelfExe + sizeof kSelfExe - (uintptr_t)page + 4095) & ~(size_t)4095;
    const int rx = PROT_READ | PROT_EXEC, rwx = PROT_READ | PROT_WRITE | PROT_EXEC;
    CHECK(mprotect(page, span, rwx) == 0);
    volatile char* s = (volatile char*)(uintptr_t)kSelfExe;
    const char dev_null[] = "/dev/null"; /* exists, and is no symbolic link */
    for (size_t i = 0; i < sizeof dev_null; ++i) s[i] = dev_null[i];
    CHECK(raw_readlink(kSelfExe, buf, sizeof buf) == -EINVAL);
    CHECK(mprotect(page, span, rx) == 0);
    CHECK(raw_readlink(kSelfExe, buf, sizeof buf) == -EINVAL);
    CHECK(mprotect(page, span, rwx) == 0);
    for (size_t i = 0; i < sizeof kSelfExe; ++i) s[i] = "/proc/self/exe"[i];
    CHECK(mprotect(page, span, rx) == 0);
    CHECK(raw_readlink(kSelfExe, buf, sizeof buf) == -ENOENT);
}

static void limits_and_info(int vessel) {
    struct rlimit rl;
    CHECK(syscall(SYS_getrlimit, RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur > 0 && rl.rlim_cur <= rl.rlim_max);
    CHECK(syscall(SYS_getrlimit, 999, &rl) == -1 && errno == EINVAL);
    struct rlimit old;
    CHECK(syscall(SYS_prlimit64, 0, RLIMIT_STACK, NULL, &old) == 0 && old.rlim_cur > 0);
    CHECK(getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur == old.rlim_cur);
    struct rlimit bad = {10, 5};
    CHECK(syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &bad, NULL) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_prlimit64, 0, 999, NULL, &old) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_sched_yield) == 0);
    cpu_set_t cs;
    CPU_ZERO(&cs);
    long n = syscall(SYS_sched_getaffinity, 0, sizeof cs, &cs);
    CHECK(n > 0 && n % 8 == 0 && CPU_COUNT(&cs) >= 1);
    CHECK(syscall(SYS_sched_getaffinity, 0, 3, &cs) == -1 && errno == EINVAL);
    if (vessel) CHECK(CPU_COUNT(&cs) == 1);

    uint32_t word = 5;
    CHECK(syscall(SYS_futex, &word, FUTEX_WAKE | FUTEX_PRIVATE, 1, NULL, NULL, 0) == 0);
    CHECK(syscall(SYS_futex, &word, FUTEX_WAIT | FUTEX_PRIVATE, 6, NULL, NULL, 0) == -1 && errno == EAGAIN);
    struct timespec to = {0, 1000000};
    CHECK(syscall(SYS_futex, &word, FUTEX_WAIT | FUTEX_PRIVATE, 5, &to, NULL, 0) == -1 && errno == ETIMEDOUT);

    unsigned char a[64], b[64];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    CHECK(syscall(SYS_getrandom, a, sizeof a, 0) == 64 && syscall(SYS_getrandom, b, sizeof b, GRND_NONBLOCK) == 64);
    CHECK(memcmp(a, b, sizeof a) != 0);
    CHECK(syscall(SYS_getrandom, a, 8, 0x40) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_getrandom, (void*)8, 8, 0) == -1 && errno == EFAULT);

    struct sysinfo si;
    CHECK(syscall(SYS_sysinfo, &si) == 0 && si.totalram > 0 && si.mem_unit >= 1 && si.procs >= 1);
    if (vessel) CHECK((uint64_t)si.totalram * si.mem_unit <= (64ull << 20));

    /* Unsupported calls answer -ENOSYS and the program goes on. */
    CHECK(RAW0(1000) == -ENOSYS); /* beyond every table */
    CHECK(RAW0(0x7fffffff) == -ENOSYS);
    CHECK(RAW0(-1L) == -ENOSYS);
}

/* Process groups and sessions, waiting with no children, CPU placement and
 * CPU time. In vessel pid 1 leads group and session 1. */
static void groups_and_usage(int vessel) {
    const long pid = getpid();
    /* (natively 0 where the group or session leader is outside the pid
     * namespace, as in the nested test machine) */
    CHECK(getpgrp() == getpgid(0) && getpgid(0) == getpgid(pid) && getpgid(0) >= 0);
    CHECK(getsid(0) == getsid(pid) && getsid(0) >= 0);
    CHECK(getpgid(-1) == -1 && errno == ESRCH);
    CHECK(setpgid(0, -1) == -1 && errno == EINVAL);
    if (vessel) {
        CHECK(getpgrp() == 1 && getsid(0) == 1);
        CHECK(getpgid(2) == -1 && errno == ESRCH);
        CHECK(setpgid(0, 0) == -1 && errno == EPERM); /* a session leader */
        CHECK(setpgid(2, 2) == -1 && errno == ESRCH);
        CHECK(setsid() == -1 && errno == EPERM);
    }

    int status;
    CHECK(wait4(-1, &status, 0, NULL) == -1 && errno == ECHILD); /* no children */
    CHECK(waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD);
    CHECK(wait4(-1, &status, 0x40000000 /* unknown */ | 0x10000000, NULL) == -1 && errno == EINVAL);
    siginfo_t si;
    CHECK(waitid(P_ALL, 0, &si, WEXITED) == -1 && errno == ECHILD);
    CHECK(waitid(P_ALL, 0, &si, WNOHANG) == -1 && errno == EINVAL); /* none of WEXITED/WSTOPPED/WCONTINUED */
    CHECK(waitid(P_PID, 0, &si, WEXITED) == -1 && errno == EINVAL);
    CHECK(waitid((idtype_t)77, 0, &si, WEXITED) == -1 && errno == EINVAL);

    cpu_set_t cs;
    CHECK(sched_getaffinity(0, sizeof cs, &cs) == 0 && CPU_ISSET(0, &cs));
    CHECK(sched_setaffinity(0, sizeof cs, &cs) == 0);
    cpu_set_t none;
    CPU_ZERO(&none);
    CHECK(sched_setaffinity(0, sizeof none, &none) == -1 && errno == EINVAL);
    errno = 0;
    const int prio = getpriority(PRIO_PROCESS, 0);
    CHECK(errno == 0 && prio >= -20 && prio < 19);
    CHECK(setpriority(PRIO_PROCESS, 0, prio + 1) == 0 && getpriority(PRIO_PROCESS, 0) == prio + 1);
    CHECK(getpriority(77, 0) == -1 && errno == EINVAL);
    if (vessel) CHECK(getpriority(PRIO_PROCESS, 2) == -1 && errno == ESRCH);
    /* I/O priority (ionice): none set, then best-effort 3, kept; bad ones refused. */
    const long best_effort_3 = (2 << 13) | 3;
    CHECK(syscall(SYS_ioprio_get, 1, 0) == 0);
    CHECK(syscall(SYS_ioprio_set, 1, 0, best_effort_3) == 0 && syscall(SYS_ioprio_get, 1, 0) == best_effort_3);
    errno = 0;
    CHECK(syscall(SYS_ioprio_set, 1, 0, 1) == -1 && errno == EINVAL); /* class none with a level */
    errno = 0;
    CHECK(syscall(SYS_ioprio_set, 1, 0, (5 << 13)) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(syscall(SYS_ioprio_get, 9, 0) == -1 && errno == EINVAL);
    unsigned cpu = 99, node = 99;
    CHECK(syscall(SYS_getcpu, &cpu, &node, NULL) == 0 && CPU_ISSET(cpu, &cs) && node < 64);
    if (vessel) CHECK(cpu == 0 && node == 0);

    /* CPU time moves while the program computes. */
    struct rusage before, after, children;
    CHECK(getrusage(RUSAGE_SELF, &before) == 0);
    const clock_t elapsed_before = times(NULL); /* clock ticks of real time: > 50 ms later, 5 more at 100 Hz */
    volatile uint64_t x = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    /* At least 50 ms, and on a loaded machine (where this thread gets a
     * small share of a CPU) until 20 ms of CPU time or 5 s have passed. */
    long used_us = 0, wall_ns = 0;
    do {
        for (int i = 0; i < 1000000; ++i) x = x * 6364136223846793005ull + 1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        wall_ns = (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
        if (getrusage(RUSAGE_SELF, &after) != 0) break;
        used_us = (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1000000L +
                  (after.ru_utime.tv_usec - before.ru_utime.tv_usec) +
                  (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1000000L +
                  (after.ru_stime.tv_usec - before.ru_stime.tv_usec);
    } while (wall_ns < 50000000L || (used_us <= 20000 && wall_ns < 5000000000L));
    CHECK(used_us > 10000);
    CHECK(getrusage(RUSAGE_CHILDREN, &children) == 0 && children.ru_utime.tv_sec == 0 &&
          children.ru_utime.tv_usec == 0);
    CHECK(getrusage(7, &children) == -1 && errno == EINVAL);
    CHECK(getrusage(RUSAGE_SELF, (struct rusage*)8) == -1 && errno == EFAULT);
    struct tms tm;
    const clock_t elapsed_after = times(&tm);
    CHECK(elapsed_after != (clock_t)-1 && tm.tms_utime + tm.tms_stime >= 1 && tm.tms_cutime == 0);
    CHECK(elapsed_before > 0 && elapsed_after - elapsed_before >= 3);
}

int main(int argc, char** argv) {
    if (argc == 3 && !strcmp(argv[1], "exit")) {
        fflush(stdout);
        RAW1(SYS_exit, atoi(argv[2])); /* the single thread ends: so does the process */
        return 99;
    }
    if (argc == 3 && !strcmp(argv[1], "exit_group")) {
        RAW1(SYS_exit_group, atoi(argv[2]));
        return 99;
    }
    if (argc == 3 && !strcmp(argv[1], "big-alloc")) {
        /* An allocation the guest's memory (--mem) may not hold. */
        void* p = mmap(NULL, (size_t)atol(argv[2]) << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? 3 : 0;
    }
    if (argc == 3 && !strcmp(argv[1], "unsupported")) {
        /* Two calls Vessel lacks, then a failure: vessel names them. */
        RAW0(SYS_io_uring_setup);
        RAW0(SYS_io_uring_setup);
        return atoi(argv[2]);
    }
    if (argc < 3) {
        fprintf(stderr, "usage: process UID GID [vessel] | exit N | exit_group N | unsupported N\n");
        return 2;
    }
    int vessel = argc > 3 && !strcmp(argv[3], "vessel");
    identity(atol(argv[1]), atol(argv[2]), vessel);
    signals();
    thread_pointer();
    limits_and_info(vessel);
    self_exe(vessel);
    groups_and_usage(vessel);
    return finish("process");
}
