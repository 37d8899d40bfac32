/* fork_wait N: N times, fork a child that exits at once and wait for it
 * (bench/processes). */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char** argv) {
    const int n = argc > 1 ? atoi(argv[1]) : 100;
    for (int i = 0; i < n; ++i) {
        const pid_t child = fork();
        if (child < 0) return 1;
        if (child == 0) _exit(0);
        int status;
        if (waitpid(child, &status, 0) != child || status != 0) return 2;
    }
    return 0;
}
