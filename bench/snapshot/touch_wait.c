/* Restore benchmark guest: writes N MiB of memory, says "ready", then blocks
 * reading stdin and exits when it ends. Snapshotted while blocked, its restore
 * (with stdin at EOF) runs to exit at once. Usage: touch_wait MIB */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char** argv) {
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 16;
    char* p = malloc(mib << 20);
    if (!p) return 1;
    for (size_t i = 0; i < (mib << 20); i += 4096) p[i] = (char)i;
    puts("ready");
    fflush(stdout);
    char c;
    while (read(0, &c, 1) > 0) {
    }
    return p[4096] == 0 ? 0 : 0;
}
