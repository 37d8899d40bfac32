/* Descriptor calls: dup, dup2, dup3, pipe2, fcntl, ioctl.
 * Usage: fds [tty ROWS COLS]  — with "tty", stdin must be a terminal whose
 * window size is ROWS x COLS; otherwise stdin must not be a terminal. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "check.h"

static void dups(void) {
    int p[2];
    CHECK(pipe2(p, 0) == 0);
    CHECK(syscall(SYS_pipe2, p, 0x12345678) == -1 && errno == EINVAL);
    int d = (int)syscall(SYS_dup, p[1]);
    CHECK(d > p[1]);
    /* Duplicates share the pipe: both write ends must close before EOF. */
    CHECK(write(d, "via-dup", 7) == 7);
    close(d);
    CHECK(syscall(SYS_dup2, p[1], 50) == 50);
    CHECK(write(50, "|50", 3) == 3);
    CHECK(syscall(SYS_dup2, 50, 50) == 50); /* dup2 to itself is a no-op */
    CHECK(syscall(SYS_dup3, 50, 50, 0) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_dup3, 50, 51, O_CLOEXEC) == 51);
    CHECK(fcntl(51, F_GETFD) == FD_CLOEXEC && fcntl(50, F_GETFD) == 0);
    CHECK(syscall(SYS_dup3, 50, 52, 0x4) == -1 && errno == EINVAL);
    CHECK(syscall(SYS_dup2, 777, 53) == -1 && errno == EBADF);
    CHECK(syscall(SYS_dup, 777) == -1 && errno == EBADF);
    CHECK(syscall(SYS_dup2, p[1], 1 << 20) == -1 && errno == EBADF);
    close(50);
    close(51);
    close(p[1]);
    char buf[64] = {0};
    int n = 0, r;
    while ((r = (int)read(p[0], buf + n, sizeof buf - 1 - n)) > 0) n += r;
    CHECK(r == 0 && strcmp(buf, "via-dup|50") == 0);
    close(p[0]);

    /* dup2 over an open descriptor closes what was there. */
    int a[2], b[2];
    CHECK(pipe2(a, O_CLOEXEC) == 0 && pipe2(b, 0) == 0);
    CHECK(fcntl(a[0], F_GETFD) == FD_CLOEXEC);
    CHECK(dup2(b[1], a[1]) == a[1]);
    CHECK(fcntl(a[1], F_GETFD) == 0); /* dup2 clears close-on-exec */
    close(b[1]);
    CHECK(write(a[1], "x", 1) == 1);
    close(a[1]);
    CHECK(read(b[0], buf, sizeof buf) == 1 && buf[0] == 'x');
    CHECK(read(a[0], buf, sizeof buf) == 0); /* a's writer was replaced, so EOF */
    close(a[0]);
    close(b[0]);
}

static void fcntls(void) {
    int p[2];
    CHECK(pipe2(p, O_NONBLOCK) == 0);
    CHECK((fcntl(p[0], F_GETFL) & O_NONBLOCK) != 0);
    CHECK((fcntl(p[0], F_GETFL) & O_ACCMODE) == O_RDONLY && (fcntl(p[1], F_GETFL) & O_ACCMODE) == O_WRONLY);
    char c;
    CHECK(read(p[0], &c, 1) == -1 && errno == EAGAIN);
    CHECK(fcntl(p[0], F_SETFL, 0) == 0 && (fcntl(p[0], F_GETFL) & O_NONBLOCK) == 0);
    CHECK(fcntl(p[1], F_SETFL, O_NONBLOCK | O_APPEND) == 0 && (fcntl(p[1], F_GETFL) & O_NONBLOCK));
    CHECK(fcntl(p[0], F_GETFD) == 0);
    CHECK(fcntl(p[0], F_SETFD, FD_CLOEXEC) == 0 && fcntl(p[0], F_GETFD) == FD_CLOEXEC);
    CHECK(fcntl(p[0], F_SETFD, 0) == 0 && fcntl(p[0], F_GETFD) == 0);
    int d = fcntl(p[1], F_DUPFD, 100);
    CHECK(d == 100 && fcntl(d, F_GETFD) == 0);
    CHECK(fcntl(p[1], F_DUPFD, 100) == 101); /* lowest free at or above */
    int e = fcntl(p[1], F_DUPFD_CLOEXEC, 10);
    CHECK(e >= 10 && e < 100 && fcntl(e, F_GETFD) == FD_CLOEXEC);
    /* The open file description is shared: O_NONBLOCK shows through the dup. */
    CHECK((fcntl(d, F_GETFL) & O_NONBLOCK) != 0);
    CHECK(fcntl(p[1], F_DUPFD, -1) == -1 && errno == EINVAL);
    CHECK(fcntl(999, F_GETFD) == -1 && errno == EBADF);
    CHECK(syscall(SYS_fcntl, p[0], 12345, 0) == -1 && errno == EINVAL);
    close(d);
    close(101);
    close(e);
    close(p[0]);
    close(p[1]);
}

static void ioctls(int tty, int rows, int cols) {
    struct termios t;
    struct winsize ws;
    int p[2];
    CHECK(pipe2(p, 0) == 0);
    CHECK(syscall(SYS_ioctl, p[0], TCGETS, &t) == -1 && errno == ENOTTY);
    CHECK(syscall(SYS_ioctl, p[0], TIOCGWINSZ, &ws) == -1 && errno == ENOTTY);
    CHECK(isatty(p[1]) == 0);
    int n = -1;
    CHECK(write(p[1], "abc", 3) == 3 && ioctl(p[0], FIONREAD, &n) == 0 && n == 3);
    /* FIONBIO is fcntl's O_NONBLOCK (Python's setblocking uses it). */
    int on = 1, off = 0;
    char drain[8];
    const int nonblocking = ioctl(p[0], FIONBIO, &on) == 0 && (fcntl(p[0], F_GETFL) & O_NONBLOCK);
    CHECK(nonblocking);
    CHECK(read(p[0], drain, sizeof drain) == 3);
    if (nonblocking) CHECK(read(p[0], drain, sizeof drain) == -1 && errno == EAGAIN); /* else it would hang */
    CHECK(ioctl(p[0], FIONBIO, &off) == 0 && !(fcntl(p[0], F_GETFL) & O_NONBLOCK));
    CHECK(syscall(SYS_ioctl, p[0], FIONBIO, (void*)8) == -1 && errno == EFAULT);
    close(p[0]);
    close(p[1]);
    CHECK(syscall(SYS_ioctl, 555, TCGETS, &t) == -1 && errno == EBADF);
    if (tty) {
        CHECK(isatty(0) == 1);
        CHECK(syscall(SYS_ioctl, 0, TCGETS, &t) == 0);
        CHECK(tcgetattr(0, &t) == 0);
        memset(&ws, 0, sizeof ws);
        CHECK(syscall(SYS_ioctl, 0, TIOCGWINSZ, &ws) == 0 && ws.ws_row == rows && ws.ws_col == cols);
    } else {
        CHECK(isatty(0) == 0 && errno == ENOTTY);
    }
}

int main(int argc, char** argv) {
    int tty = argc > 3 && !strcmp(argv[1], "tty");
    dups();
    fcntls();
    ioctls(tty, tty ? atoi(argv[2]) : 0, tty ? atoi(argv[3]) : 0);
    return finish("fds");
}
