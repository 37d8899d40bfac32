/* signalfd: reading blocked signals as records, readiness for poll and
 * epoll, changing the set, the argument checks, and a blocking read that a
 * timer's signal ends (sent by the kernel: SI_KERNEL, no sender).
 * Usage: signalfd */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static int is_pending(int sig) {
    sigset_t set;
    sigpending(&set);
    return sigismember(&set, sig);
}

int main(void) {
    sigset_t usr, one, all;
    sigemptyset(&usr);
    sigaddset(&usr, SIGUSR1);
    sigaddset(&usr, SIGUSR2);
    sigaddset(&usr, SIGALRM);
    CHECK(sigprocmask(SIG_BLOCK, &usr, NULL) == 0);
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);

    /* Nothing pending: not readable, a non-blocking read says EAGAIN. */
    int sfd = signalfd(-1, &one, SFD_NONBLOCK | SFD_CLOEXEC);
    CHECK(sfd >= 0);
    CHECK((fcntl(sfd, F_GETFD) & FD_CLOEXEC) != 0);
    struct signalfd_siginfo si[2];
    errno = 0;
    CHECK(read(sfd, si, sizeof si[0]) == -1 && errno == EAGAIN);
    CHECK(!readable(sfd));

    /* A blocked signal of the set: readable; one record, then nothing. */
    CHECK(raise(SIGUSR1) == 0);
    CHECK(readable(sfd));
    errno = 0;
    CHECK(read(sfd, si, sizeof si[0] - 1) == -1 && errno == EINVAL); /* too small for a record */
    CHECK(is_pending(SIGUSR1));                                      /* and nothing was taken */
    CHECK(read(sfd, si, sizeof si) == (ssize_t)sizeof si[0]);
    CHECK(si[0].ssi_signo == SIGUSR1);
    CHECK(si[0].ssi_code == SI_TKILL); /* raise() is tgkill */
    CHECK(si[0].ssi_pid == (uint32_t)getpid());
    CHECK(si[0].ssi_uid == (uint32_t)getuid());
    CHECK(!is_pending(SIGUSR1));
    CHECK(!readable(sfd));

    /* A signal outside the set leaves it unreadable until the set grows
     * (signalfd on the same descriptor gives it back). */
    CHECK(kill(getpid(), SIGUSR2) == 0);
    CHECK(!readable(sfd));
    CHECK(signalfd(sfd, &usr, 0) == sfd);
    CHECK(readable(sfd));
    CHECK(read(sfd, si, sizeof si) == (ssize_t)sizeof si[0]);
    CHECK(si[0].ssi_signo == SIGUSR2 && si[0].ssi_code == SI_USER);

    /* Two at once, the lower number first; epoll sees the descriptor. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 77};
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) == 0);
    struct epoll_event got;
    CHECK(epoll_wait(ep, &got, 1, 0) == 0);
    CHECK(raise(SIGUSR2) == 0);
    CHECK(raise(SIGUSR1) == 0);
    CHECK(epoll_wait(ep, &got, 1, 0) == 1 && got.data.u64 == 77);
    CHECK(read(sfd, si, sizeof si) == (ssize_t)sizeof si);
    CHECK(si[0].ssi_signo == SIGUSR1 && si[1].ssi_signo == SIGUSR2);
    CHECK(epoll_wait(ep, &got, 1, 0) == 0);

    /* sigtimedwait takes it first, and the descriptor follows. */
    CHECK(raise(SIGUSR1) == 0);
    struct timespec zero = {0, 0};
    CHECK(sigtimedwait(&one, NULL, &zero) == SIGUSR1);
    CHECK(!readable(sfd));

    /* The argument checks. */
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0);
    errno = 0;
    CHECK(signalfd(pipe_fds[0], &one, 0) == -1 && errno == EINVAL); /* not a signalfd */
    errno = 0;
    CHECK(signalfd(999, &one, 0) == -1 && errno == EBADF);
    errno = 0;
    CHECK(signalfd(-1, &one, 0x1234) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(syscall(SYS_signalfd4, -1, &one, 4, 0) == -1 && errno == EINVAL); /* sizemask */
    errno = 0;
    CHECK(syscall(SYS_signalfd4, -1, (void*)8, 8, 0) == -1 && errno == EFAULT);
    uint64_t value = 1;
    errno = 0;
    CHECK(write(sfd, &value, sizeof value) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(pread(sfd, si, sizeof si, 0) == -1 && errno == ESPIPE);
    /* SIGKILL and SIGSTOP are dropped from a set, silently. */
    sigfillset(&all);
    int every = signalfd(-1, &all, SFD_NONBLOCK);
    CHECK(every >= 0);
    CHECK(!readable(every));

    /* A blocking read waits for the timer's SIGALRM. */
    sigset_t alarm_set;
    sigemptyset(&alarm_set);
    sigaddset(&alarm_set, SIGALRM);
    int afd = signalfd(-1, &alarm_set, 0);
    CHECK(afd >= 0);
    struct itimerval t = {.it_interval = {0, 0}, .it_value = {0, 200000}};
    CHECK(setitimer(ITIMER_REAL, &t, NULL) == 0);
    struct timespec before, after;
    clock_gettime(CLOCK_MONOTONIC, &before);
    CHECK(read(afd, si, sizeof si) == (ssize_t)sizeof si[0]);
    clock_gettime(CLOCK_MONOTONIC, &after);
    CHECK(si[0].ssi_signo == SIGALRM);
    CHECK(si[0].ssi_code == SI_KERNEL && si[0].ssi_pid == 0); /* the timer's: the kernel sent it */
    const double waited = (after.tv_sec - before.tv_sec) + (after.tv_nsec - before.tv_nsec) / 1e9;
    CHECK(waited > 0.1 && waited < 5);
    CHECK(close(afd) == 0 && close(every) == 0 && close(sfd) == 0 && close(ep) == 0);
    return finish("signalfd");
}
