// What the jail adds to a VMM's start, without KVM: `jail_cost jail DIR`
// enters the jail's namespaces and locks it with DIR bound as a thin VM's
// sandbox root (what `vessel run` does around building its VM); `jail_cost
// none DIR` opens DIR and exits. bench/jail times the two with hyperfine.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "jail/jail.h"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: jail_cost jail|none DIR\n");
        return 2;
    }
    using namespace vessel::jail;
    bool jailed = std::strcmp(argv[1], "jail") == 0;
    if (jailed)
        if (auto r = enter_namespaces(); !r) {
            std::fprintf(stderr, "%s\n", r.error().message.c_str());
            return 1;
        }
    int dir = ::open(argv[2], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return 1;
    if (!jailed) return 0;
    if (auto r = lock({}, {{dir, sandbox_target(0), false}}); !r) {
        std::fprintf(stderr, "%s\n", r.error().message.c_str());
        return 1;
    }
    announce_exit(0);
    return 0;
}
