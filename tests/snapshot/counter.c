/* Snapshot test guest: prints a counter and a checksum of memory it keeps
 * changing, sleeping between steps. A run that is paused, snapshotted, killed
 * and restored must print exactly what an uninterrupted run prints.
 * Usage: counter STEPS SLEEP_MS [FILE | -pipe | -grow | -read INPUT | -random]  (FILE: also append
 * each line there through a second descriptor, to check files survive a
 * restore; -pipe: hold a pipe open, which cannot be snapshotted; -grow:
 * also fill a new 64 KiB block each step, never touched again until a last
 * line with the checksum of all blocks, so memory first written between
 * two snapshots and left alone since must survive them; -read: also read
 * 256 bytes of INPUT each step into the checksum, so a read-ahead window
 * that is live while the snapshot is taken must survive it; -random: also
 * print 16 bytes from getrandom each step, which two VMs restored from one
 * snapshot must not share; -readlink: also ask readlink("/proc/self/exe")
 * ten times each step, which the guest-side entry answers without an exit).
 * FILE may be followed by -signals: SIGUSR1 is blocked and raised, and a
 * 1000 s timer started; after the last step a line says whether the timer
 * is still armed, and the handler's line follows once SIGUSR1 is unblocked:
 * a pending signal and the timer must survive a restore. FILE may instead
 * be followed by -exec: the program first runs itself again (execve) with
 * other arguments and one more environment variable, and at the end prints
 * what /proc/self/{cmdline,comm,environ} say: the exec'd program's, also
 * after a restore. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static void say(int sig) {
    (void)sig;
    write(1, "handler: SIGUSR1\n", 17);
}

int main(int argc, char** argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 40;
    int sleep_ms = argc > 2 ? atoi(argv[2]) : 50;
    int fd = -1, pipe_fds[2], grow = 0, input = -1, random = 0, self_exe = 0;
    enum { kBlocks = 256, kBlockWords = 8192 };
    static uint64_t* blocks[kBlocks];
    if (argc > 3 && strcmp(argv[3], "-pipe") == 0) {
        if (pipe(pipe_fds) != 0) return 1;
    } else if (argc > 3 && strcmp(argv[3], "-grow") == 0) {
        grow = 1;
    } else if (argc > 3 && strcmp(argv[3], "-random") == 0) {
        random = 1;
    } else if (argc > 3 && strcmp(argv[3], "-readlink") == 0) {
        self_exe = 1;
    } else if (argc > 4 && strcmp(argv[3], "-read") == 0) {
        input = open(argv[4], O_RDONLY);
        if (input < 0) return 1;
    } else if (argc > 3) {
        fd = open(argv[3], O_WRONLY | O_CREAT | O_APPEND, 0644);
    }
    const int signals = fd >= 0 && argc > 4 && strcmp(argv[4], "-signals") == 0;
    if (fd >= 0 && argc > 4 && strcmp(argv[4], "-exec") == 0) {
        char* const again[] = {argv[0], argv[1], argv[2], argv[3], "-execd", "after exec", NULL};
        char* const env[] = {"COUNTER_EXECD=1", NULL};
        execve(argv[0], again, env);
        return 1;
    }
    const int execd = fd >= 0 && argc > 4 && strcmp(argv[4], "-execd") == 0;
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (signals) {
        signal(SIGUSR1, say);
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        raise(SIGUSR1);
        struct itimerval timer = {.it_interval = {0, 0}, .it_value = {1000, 0}};
        if (setitimer(ITIMER_REAL, &timer, NULL) != 0) return 1;
    }
    size_t size = 4 << 20;
    uint64_t* heap = malloc(size);
    static uint64_t bss[8192];
    uint64_t state = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < size / 8; ++i) heap[i] = i * 0x100000001b3ull;
    for (int step = 0; step < steps; ++step) {
        for (size_t i = 0; i < size / 8; i += 61) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            heap[i] ^= state;
            bss[i % 8192] += heap[i];
        }
        uint64_t sum = 0;
        if (grow && step < kBlocks) {
            blocks[step] = malloc(kBlockWords * 8);
            for (size_t i = 0; i < kBlockWords; ++i) blocks[step][i] = state ^ (i * 0x9e3779b97f4a7c15ull);
        }
        for (size_t i = 0; i < size / 8; ++i) sum = sum * 31 + heap[i];
        for (size_t i = 0; i < 8192; ++i) sum ^= bss[i] + i;
        if (input >= 0) {
            unsigned char chunk[256];
            ssize_t got = read(input, chunk, sizeof chunk);
            sum += (uint64_t)got << 56;
            for (ssize_t i = 0; i < got; ++i) sum = sum * 131 + chunk[i];
        }
        char line[64];
        int n = snprintf(line, sizeof line, "%d %016llx\n", step, (unsigned long long)sum);
        fputs(line, stdout);
        fflush(stdout);
        if (fd >= 0) write(fd, line, n);
        for (int i = 0; self_exe && i < 10; ++i) {
            char link[256];
            if (readlink("/proc/self/exe", link, sizeof link) != -1) return 1; /* none in a thin VM */
        }
        if (random) {
            unsigned char bytes[16];
            if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes) return 1;
            for (unsigned i = 0; i < sizeof bytes; ++i) printf("%02x", bytes[i]);
            printf("\n");
            fflush(stdout);
        }
        struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (signals) {
        struct itimerval timer;
        getitimer(ITIMER_REAL, &timer);
        printf("timer armed: %s\n", timer.it_value.tv_sec > 900 ? "yes" : "no");
        fflush(stdout);
        sigprocmask(SIG_UNBLOCK, &usr1, NULL);
    }
    if (execd) {
        static const char* const files[] = {"/proc/self/cmdline", "/proc/self/comm", "/proc/self/environ"};
        for (int i = 0; i < 3; ++i) {
            char text[512];
            int f = open(files[i], O_RDONLY);
            ssize_t n = f < 0 ? -1 : read(f, text, sizeof text - 1);
            if (n < 0) return 1;
            for (ssize_t j = 0; j < n; ++j)
                if (text[j] == '\0' || text[j] == '\n') text[j] = ' ';
            text[n] = 0;
            printf("%s: %s\n", files[i], text);
            close(f);
        }
    }
    if (grow) {
        uint64_t sum = 0;
        for (int b = 0; b < steps && b < kBlocks; ++b)
            for (size_t i = 0; i < kBlockWords; ++i) sum = sum * 7 + blocks[b][i];
        printf("blocks %016llx\n", (unsigned long long)sum);
    }
    return 0;
}
