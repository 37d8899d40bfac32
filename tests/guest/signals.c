/* Signal handlers: what Linux gives a handler and what rt_sigreturn gives
 * back. Each check holds natively; the test runs it in `vessel run` too.
 * Usage: signals [all | bad-frame | nested-fault | wait-read HOW | spin HOW | sigwait]
 *   all               the checks below; exits 0 when they pass
 *   bad-frame         a handler that wrecks its frame's FPU state pointer:
 *                     rt_sigreturn must kill the process with SIGSEGV
 *   jit-restorer      a handler returning through generated code (an
 *                     un-rewritten rt_sigreturn): still in user mode after
 *   wild-frame        a handler that points the frame's RIP at a
 *                     non-canonical address and RSP at 0: SIGSEGV
 *   nested-fault      a SIGSEGV handler that faults again (SIGSEGV blocked
 *                     in it): the process dies of SIGSEGV
 *   wait-read, spin   wait for a SIGINT from outside (see below); wait-read
 *                     masked: ppoll lets in the blocked SIGINT
 *   sigwait [unblocked]  block SIGINT (or give it a handler) and wait for
 *                     it with sigwaitinfo */
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "check.h"

static volatile sig_atomic_t g_count, g_last_sig, g_last_code;
static volatile uintptr_t g_last_addr, g_handler_sp;
static volatile uint64_t g_mask_in_handler;
static sigjmp_buf g_jump;

static void counting(int sig) {
    ++g_count;
    g_last_sig = sig;
}

static void with_info(int sig, siginfo_t* info, void* uc_arg) {
    ucontext_t* uc = uc_arg;
    ++g_count;
    g_last_sig = sig;
    g_last_code = info->si_code;
    g_last_addr = (uintptr_t)info->si_addr;
    int probe;
    g_handler_sp = (uintptr_t)&probe;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    uint64_t bits = 0;
    for (int s = 1; s < 64; ++s)
        if (sigismember(&now, s) == 1) bits |= 1ull << (s - 1);
    g_mask_in_handler = bits;
    (void)uc;
}

/* Recovers from a fault by jumping out of the handler. */
static void escape(int sig, siginfo_t* info, void* uc) {
    with_info(sig, info, uc);
    siglongjmp(g_jump, 1);
}

/* Skips a 2-byte instruction (ud2) by changing the saved RIP. */
static void skip_ud2(int sig, siginfo_t* info, void* uc_arg) {
    ucontext_t* uc = uc_arg;
    with_info(sig, info, uc_arg);
    uc->uc_mcontext.gregs[REG_RIP] += 2;
}

/* Changes registers in the frame: rt_sigreturn must restore them. */
static void set_rbx(int sig, siginfo_t* info, void* uc_arg) {
    ucontext_t* uc = uc_arg;
    with_info(sig, info, uc_arg);
    uc->uc_mcontext.gregs[REG_RBX] = 0x1234567887654321;
}

/* Uses SSE registers and the x87 unit: the interrupted code's values must
 * come back. */
static volatile double g_handler_result;
static void fpu_user(int sig) {
    volatile double a = 1.5, b = 2.25;
    g_handler_result = a * b + 1e-3;
    __asm__ volatile("xorps %%xmm0, %%xmm0; xorps %%xmm8, %%xmm8; fninit" ::: "xmm0", "xmm8");
    ++g_count;
    g_last_sig = sig;
}

static void wreck_fpstate(int sig, siginfo_t* info, void* uc_arg) {
    ucontext_t* uc = uc_arg;
    (void)sig, (void)info;
    uc->uc_mcontext.fpregs = (void*)(uintptr_t)0x10; /* unmapped */
}

/* Makes the interrupted call's result -EINTR. */
static void result_eintr(int sig, siginfo_t* info, void* uc_arg) {
    ucontext_t* uc = uc_arg;
    (void)sig, (void)info;
    uc->uc_mcontext.gregs[REG_RAX] = -EINTR;
    ++g_count;
}

/* Returns into nowhere: a non-canonical RIP and a null stack. */
static void wreck_registers(int sig, siginfo_t* info, void* uc_arg) {
    ucontext_t* uc = uc_arg;
    (void)sig, (void)info;
    uc->uc_mcontext.gregs[REG_RIP] = (greg_t)0xdead000000000000ull;
    uc->uc_mcontext.gregs[REG_RSP] = 0;
    uc->uc_mcontext.gregs[REG_EFL] = -1; /* every flag: only those user code may set are taken */
}

/* On the alternate stack: sigaltstack says so and refuses a change. */
static volatile int g_alt_flags, g_alt_change_errno;
static void alt_probe(int sig) {
    stack_t now, other = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    g_alt_flags = sigaltstack(NULL, &now) == 0 ? now.ss_flags : -1;
    g_alt_change_errno = sigaltstack(&other, NULL) == 0 ? 0 : errno;
    ++g_count;
    g_last_sig = sig;
}

static void fault_again(int sig) {
    (void)sig;
    *(volatile int*)(uintptr_t)8 = 1;
}

static struct sigaction action(void (*handler)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    return sa;
}

static struct sigaction info_action(void (*handler)(int, siginfo_t*, void*), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = flags | SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    return sa;
}

static int is_blocked(int sig) {
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    return sigismember(&now, sig) == 1;
}

int main(int argc, char** argv) {
    const char* mode = argc > 1 ? argv[1] : "all";
    if (!strcmp(mode, "bad-frame")) {
        struct sigaction sa = info_action(wreck_fpstate, 0);
        sigaction(SIGUSR1, &sa, NULL);
        raise(SIGUSR1);
        return 0; /* not reached: rt_sigreturn kills the process */
    }
    if (!strcmp(mode, "wait-read") || !strcmp(mode, "spin")) {
        /* For a SIGINT (or SIGWINCH) from outside: `how` is eintr (a
         * handler), restart (a handler with SA_RESTART), ignore (SIG_IGN of
         * SIGINT) or default. Prints
         * "ready", then blocks reading stdin, or spins until the handler ran. */
        const char* how = argc > 2 ? argv[2] : "default";
        if (!strcmp(how, "masked")) {
            /* SIGINT blocked, and let in only while ppoll waits for stdin. */
            struct sigaction sa = action(counting, 0);
            sigaction(SIGINT, &sa, NULL);
            sigset_t block, open_mask;
            sigemptyset(&block);
            sigaddset(&block, SIGINT);
            sigprocmask(SIG_BLOCK, &block, NULL);
            sigemptyset(&open_mask);
            printf("ready\n");
            fflush(stdout);
            struct pollfd in = {0, POLLIN, 0};
            int r = ppoll(&in, 1, NULL, &open_mask);
            printf("ppoll: %s, handler ran %d, SIGINT blocked after: %s\n",
                   r >= 0           ? "ready"
                   : errno == EINTR ? "EINTR"
                                    : strerror(errno),
                   (int)g_count, is_blocked(SIGINT) ? "yes" : "no");
            return 0;
        }
        if (!strcmp(how, "eintr") || !strcmp(how, "restart")) {
            struct sigaction sa = action(counting, !strcmp(how, "restart") ? SA_RESTART : 0);
            sigaction(SIGINT, &sa, NULL);
            sigaction(SIGWINCH, &sa, NULL);
        } else if (!strcmp(how, "ignore")) {
            signal(SIGINT, SIG_IGN);
        }
        printf("ready\n");
        fflush(stdout);
        if (!strcmp(mode, "spin")) {
            while (!g_count) {
            }
            printf("spun until handler ran %d\n", (int)g_count);
            return 0;
        }
        char buf[16];
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0)
            printf("read: %s, handler ran %d\n", errno == EINTR ? "EINTR" : strerror(errno), (int)g_count);
        else
            printf("read %d bytes, handler ran %d\n", (int)n, (int)g_count);
        return 0;
    }
    if (!strcmp(mode, "sigwait")) {
        /* For a SIGINT from outside, blocked and waited for; with
         * "unblocked", not blocked and with a handler: the wait takes it
         * all the same and the handler does not run. */
        const int unblocked = argc > 2 && !strcmp(argv[2], "unblocked");
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        if (unblocked) {
            struct sigaction sa = action(counting, 0);
            sigaction(SIGINT, &sa, NULL);
        } else {
            sigprocmask(SIG_BLOCK, &set, NULL);
        }
        printf("ready\n");
        fflush(stdout);
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        printf("sigwaitinfo: %s, SI_USER %s, handler ran %d\n", sig == SIGINT ? "SIGINT" : strerror(errno),
               si.si_code == SI_USER ? "yes" : "no", (int)g_count);
        return 0;
    }
    if (!strcmp(mode, "jit-restorer")) {
        /* The handler returns through generated code (mov eax, 15; syscall):
         * an rt_sigreturn no load-time rewrite covers, restoring RAX =
         * -EINTR. The code after it must still run in user mode: a
         * privileged instruction faults. */
        static const unsigned char code[] = {0xb8, 15, 0, 0, 0, 0x0f, 0x05};
        unsigned char* restorer =
            mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        CHECK(restorer != MAP_FAILED);
        memcpy(restorer, code, sizeof code);
        struct {
            void* handler;
            unsigned long flags;
            void* restorer;
            uint64_t mask;
        } ka = {(void*)result_eintr, SA_SIGINFO | 0x04000000 /* SA_RESTORER */, restorer, 0};
        CHECK(RAW4(SYS_rt_sigaction, SIGUSR1, &ka, 0, 8) == 0);
        g_count = 0;
        CHECK(RAW3(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR1) == -EINTR && g_count == 1);
        struct sigaction sa = info_action(escape, 0);
        CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
        g_last_sig = 0;
        if (!sigsetjmp(g_jump, 1)) {
            __asm__ volatile("mov %%cr0, %%rax" ::: "rax");
            CHECK(0);
        }
        CHECK(g_last_sig == SIGSEGV);
        return finish("signals jit-restorer");
    }
    if (!strcmp(mode, "wild-frame")) {
        struct sigaction sa = info_action(wreck_registers, 0);
        sigaction(SIGUSR1, &sa, NULL);
        raise(SIGUSR1);
        return 0; /* not reached: the return faults */
    }
    if (!strcmp(mode, "nested-fault")) {
        struct sigaction sa = action(fault_again, 0);
        sigaction(SIGSEGV, &sa, NULL);
        *(volatile int*)(uintptr_t)16 = 1;
        return 0; /* not reached */
    }

    /* A handler runs for a signal the program sends itself, with the signal
     * blocked while it runs and unblocked after. */
    struct sigaction sa = action(counting, 0);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    g_count = 0;
    CHECK(raise(SIGUSR1) == 0);
    CHECK(g_count == 1 && g_last_sig == SIGUSR1);
    CHECK(!is_blocked(SIGUSR1));
    CHECK(kill(getpid(), SIGUSR1) == 0);
    CHECK(g_count == 2);

    /* siginfo: kill is SI_USER from this process, tgkill (raise) SI_TKILL;
     * the mask inside holds the signal and sa_mask. */
    sa = info_action(with_info, 0);
    sigaddset(&sa.sa_mask, SIGUSR2);
    CHECK(sigaction(SIGHUP, &sa, NULL) == 0);
    CHECK(kill(getpid(), SIGHUP) == 0);
    CHECK(g_last_sig == SIGHUP && g_last_code == SI_USER);
    CHECK(g_mask_in_handler == ((1ull << (SIGHUP - 1)) | (1ull << (SIGUSR2 - 1))));
    CHECK(raise(SIGHUP) == 0);
    CHECK(g_last_code == SI_TKILL);
    CHECK(!is_blocked(SIGHUP) && !is_blocked(SIGUSR2));

    /* SA_NODEFER: the signal is not blocked in its own handler. */
    sa = info_action(with_info, SA_NODEFER);
    CHECK(sigaction(SIGHUP, &sa, NULL) == 0);
    CHECK(raise(SIGHUP) == 0);
    CHECK(g_mask_in_handler == 0);

    /* A blocked signal waits, and runs when unblocked. */
    sa = action(counting, 0);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    g_count = 0;
    CHECK(raise(SIGUSR2) == 0);
    CHECK(g_count == 0);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    CHECK(g_count == 1 && g_last_sig == SIGUSR2);

    /* SA_RESETHAND: the handler runs once; then the default (here: SIGCHLD,
     * ignored by default, so the program lives). */
    sa = action(counting, SA_RESETHAND);
    CHECK(sigaction(SIGCHLD, &sa, NULL) == 0);
    g_count = 0;
    CHECK(raise(SIGCHLD) == 0 && raise(SIGCHLD) == 0);
    CHECK(g_count == 1);
    struct sigaction old;
    CHECK(sigaction(SIGCHLD, NULL, &old) == 0 && old.sa_handler == SIG_DFL);

    /* Registers changed in the frame come back; the stack is 16-byte
     * aligned as after a call (the probe is in the handler's frame). */
    sa = info_action(set_rbx, 0);
    CHECK(sigaction(SIGWINCH, &sa, NULL) == 0);
    const long pid = getpid(), tid = syscall(SYS_gettid);
    uint64_t rbx_after;
    __asm__ volatile(
        "xor %%ebx, %%ebx\n\t"
        "syscall\n\t"
        "mov %%rbx, %0"
        : "=r"(rbx_after)
        : "a"(SYS_tgkill), "D"(pid), "S"(tid), "d"(SIGWINCH)
        : "rbx", "rcx", "r11", "memory");
    CHECK(rbx_after == 0x1234567887654321);

    /* Faults: SIGSEGV with the address and SEGV_MAPERR or SEGV_ACCERR,
     * recovered with siglongjmp. */
    sa = info_action(escape, 0);
    CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
    if (!sigsetjmp(g_jump, 1)) {
        *(volatile int*)(uintptr_t)0x40 = 1;
        CHECK(0);
    }
    CHECK(g_last_sig == SIGSEGV && g_last_code == SEGV_MAPERR && g_last_addr == 0x40);
    CHECK(!is_blocked(SIGSEGV)); /* siglongjmp with savemask restored it */
    char* ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(ro != MAP_FAILED);
    if (!sigsetjmp(g_jump, 1)) {
        ro[8] = 1;
        CHECK(0);
    }
    CHECK(g_last_code == SEGV_ACCERR && g_last_addr == (uintptr_t)ro + 8);

    /* SIGFPE from an integer division by zero, at the instruction. */
    CHECK(sigaction(SIGFPE, &sa, NULL) == 0);
    static volatile int zero = 0;
    if (!sigsetjmp(g_jump, 1)) {
        volatile int q = 10 / zero;
        (void)q;
        CHECK(0);
    }
    CHECK(g_last_sig == SIGFPE && g_last_code == FPE_INTDIV && g_last_addr != 0);

    /* SIGILL, resumed past the instruction by the handler. */
    sa = info_action(skip_ud2, 0);
    CHECK(sigaction(SIGILL, &sa, NULL) == 0);
    g_count = 0;
    __asm__ volatile("ud2");
    CHECK(g_count == 1 && g_last_sig == SIGILL && g_last_code == ILL_ILLOPN);

    /* SIGTRAP from int3 returns after the instruction. */
    sa = info_action(with_info, 0);
    CHECK(sigaction(SIGTRAP, &sa, NULL) == 0);
    g_count = 0;
    __asm__ volatile("int3");
    CHECK(g_count == 1 && g_last_sig == SIGTRAP);

    /* The alternate stack: SA_ONSTACK handlers run on it. */
    static char alt[65536];
    stack_t ss = {.ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0};
    CHECK(sigaltstack(&ss, NULL) == 0);
    sa = info_action(with_info, SA_ONSTACK);
    CHECK(sigaction(SIGURG, &sa, NULL) == 0);
    CHECK(raise(SIGURG) == 0);
    CHECK(g_handler_sp > (uintptr_t)alt && g_handler_sp < (uintptr_t)alt + sizeof alt);
    stack_t now;
    CHECK(sigaltstack(NULL, &now) == 0 && now.ss_sp == alt && now.ss_flags == 0);
    sa = action(alt_probe, SA_ONSTACK);
    CHECK(sigaction(SIGURG, &sa, NULL) == 0);
    CHECK(raise(SIGURG) == 0);
    CHECK(g_alt_flags == SS_ONSTACK && g_alt_change_errno == EPERM);
    sa = info_action(with_info, 0); /* without SA_ONSTACK: the normal stack */
    CHECK(sigaction(SIGURG, &sa, NULL) == 0);
    CHECK(raise(SIGURG) == 0);
    CHECK(!(g_handler_sp > (uintptr_t)alt && g_handler_sp < (uintptr_t)alt + sizeof alt));

    /* FPU and SSE state survive a handler that uses and clobbers them. */
    sa = action(fpu_user, 0);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    uint64_t xmm_after;
    __asm__ volatile(
        "movq %[v], %%xmm8\n\t"
        "syscall\n\t"
        "movq %%xmm8, %[out]"
        : [out] "=r"(xmm_after)
        : [v] "r"(0x1122334455667788ull), "a"(SYS_tgkill), "D"(pid), "S"(tid), "d"(SIGALRM)
        : "rcx", "r11", "xmm8", "memory");
    CHECK(xmm_after == 0x1122334455667788ull);
    CHECK(g_count > 0 && g_last_sig == SIGALRM && g_handler_result == 1.5 * 2.25 + 1e-3);

    /* rt_sigpending shows a blocked signal; rt_sigsuspend lets it in, runs
     * its handler under the suspend mask, returns EINTR and restores the
     * caller's mask. */
    sa = info_action(with_info, 0);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    g_count = 0;
    CHECK(raise(SIGUSR2) == 0);
    sigset_t waiting;
    CHECK(sigpending(&waiting) == 0 && sigismember(&waiting, SIGUSR2) == 1 && sigismember(&waiting, SIGUSR1) == 0);
    sigset_t open_mask;
    sigemptyset(&open_mask);
    sigaddset(&open_mask, SIGHUP);
    errno = 0;
    CHECK(sigsuspend(&open_mask) == -1 && errno == EINTR);
    CHECK(g_count == 1 && g_last_sig == SIGUSR2);
    CHECK(g_mask_in_handler == ((1ull << (SIGHUP - 1)) | (1ull << (SIGUSR2 - 1))));
    CHECK(is_blocked(SIGUSR2) && !is_blocked(SIGHUP));
    CHECK(sigpending(&waiting) == 0 && sigismember(&waiting, SIGUSR2) == 0);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);

    /* alarm and pause: SIGALRM ends the wait through its handler. */
    sa = action(counting, 0);
    CHECK(sigaction(SIGALRM, &sa, NULL) == 0);
    g_count = 0;
    CHECK(alarm(1) == 0);
    errno = 0;
    CHECK(pause() == -1 && errno == EINTR);
    CHECK(g_count == 1 && g_last_sig == SIGALRM);

    /* setitimer reads back; a 50 ms timer wakes rt_sigsuspend. */
    struct itimerval tv = {.it_interval = {0, 0}, .it_value = {5, 0}}, got;
    CHECK(setitimer(ITIMER_REAL, &tv, NULL) == 0);
    CHECK(getitimer(ITIMER_REAL, &got) == 0 && got.it_value.tv_sec <= 5 && got.it_value.tv_sec >= 4);
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    tv.it_value.tv_sec = 0;
    tv.it_value.tv_usec = 50000;
    CHECK(setitimer(ITIMER_REAL, &tv, NULL) == 0);
    g_count = 0;
    CHECK(sigsuspend(&open_mask) == -1 && errno == EINTR);
    CHECK(g_count == 1 && g_last_sig == SIGALRM && is_blocked(SIGALRM));
    CHECK(getitimer(ITIMER_REAL, &got) == 0 && got.it_value.tv_sec == 0 && got.it_value.tv_usec == 0);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);

    /* rt_sigtimedwait takes a pending signal of its set with its siginfo
     * (the handler does not run), polls with a zero timeout, times out,
     * and waits for a timer's signal; bad arguments as Linux. */
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGALRM);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    g_count = 0;
    CHECK(RAW3(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGUSR2) == 0);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    struct timespec no_wait = {0, 0}, short_wait = {0, 20000000}, t0, t1;
    /* (raw: glibc's wrapper turns SI_TKILL into SI_USER) */
    CHECK(RAW4(SYS_rt_sigtimedwait, &set, &si, &no_wait, 8) == SIGUSR2);
    CHECK(si.si_signo == SIGUSR2 && si.si_code == SI_TKILL && si.si_pid == getpid() && g_count == 0);
    CHECK(sigpending(&waiting) == 0 && sigismember(&waiting, SIGUSR2) == 0);
    errno = 0;
    CHECK(sigtimedwait(&set, &si, &no_wait) == -1 && errno == EAGAIN);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    errno = 0;
    CHECK(sigtimedwait(&set, NULL, &short_wait) == -1 && errno == EAGAIN);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    CHECK((t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec) >= 20000000L);
    tv.it_value.tv_usec = 50000;
    CHECK(setitimer(ITIMER_REAL, &tv, NULL) == 0);
    CHECK(sigwaitinfo(&set, &si) == SIGALRM && si.si_signo == SIGALRM && g_count == 0);
    struct timespec bad = {0, 2000000000L};
    errno = 0;
    CHECK(sigtimedwait(&set, NULL, &bad) == -1 && errno == EINVAL);
    CHECK(RAW4(SYS_rt_sigtimedwait, &set, NULL, &no_wait, 4) == -EINVAL);
    CHECK(raise(SIGUSR2) == 0);
    CHECK(RAW4(SYS_rt_sigtimedwait, &set, 8, &no_wait, 8) == -EFAULT);
    CHECK(sigpending(&waiting) == 0 && sigismember(&waiting, SIGUSR2) == 0); /* taken all the same */
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);

    /* ppoll, pselect and epoll_pwait with a signal mask: it holds while the
     * call waits. A blocked, pending signal the mask lets in ends the wait at
     * once with EINTR and its handler runs under the call's mask; the
     * caller's mask is back after. A ready descriptor wins: the call returns
     * it and the signal stays pending, blocked. */
    sa = info_action(with_info, 0);
    CHECK(sigaction(SIGUSR2, &sa, NULL) == 0);
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0);
    sigset_t let_in;
    sigemptyset(&let_in);
    sigaddset(&let_in, SIGHUP);
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, pipe_fds[0], &ev) == 0);
    for (int call = 0; call < 3; ++call) {
        g_count = 0;
        CHECK(raise(SIGUSR2) == 0 && g_count == 0);
        struct pollfd pfd = {pipe_fds[0], POLLIN, 0};
        fd_set readable;
        FD_ZERO(&readable);
        FD_SET(pipe_fds[0], &readable);
        struct timespec five_s = {5, 0};
        errno = 0;
        int r = call == 0   ? ppoll(&pfd, 1, &five_s, &let_in)
                : call == 1 ? pselect(pipe_fds[0] + 1, &readable, NULL, NULL, &five_s, &let_in)
                            : epoll_pwait(ep, &ev, 1, 5000, &let_in);
        CHECK(r == -1 && errno == EINTR);
        CHECK(g_count == 1 && g_last_sig == SIGUSR2);
        CHECK(g_mask_in_handler == ((1ull << (SIGHUP - 1)) | (1ull << (SIGUSR2 - 1))));
        CHECK(is_blocked(SIGUSR2) && !is_blocked(SIGHUP));
    }
    CHECK(write(pipe_fds[1], "x", 1) == 1);
    g_count = 0;
    CHECK(raise(SIGUSR2) == 0);
    struct pollfd ready = {pipe_fds[0], POLLIN, 0};
    struct timespec five_s = {5, 0};
    CHECK(ppoll(&ready, 1, &five_s, &let_in) == 1 && ready.revents == POLLIN);
    CHECK(g_count == 0 && is_blocked(SIGUSR2));
    CHECK(sigpending(&waiting) == 0 && sigismember(&waiting, SIGUSR2) == 1);
    CHECK(sigprocmask(SIG_UNBLOCK, &set, NULL) == 0);
    CHECK(g_count == 1);
    close(ep);
    close(pipe_fds[0]);
    close(pipe_fds[1]);

    /* SIG_IGN discards; a default-terminate signal that is blocked waits. */
    sa = action(SIG_IGN, 0);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0);
    CHECK(raise(SIGUSR1) == 0);

    return finish("signals");
}
