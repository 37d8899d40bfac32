// Finding the VMM of a `vessel` process in tests.
#pragma once

#include <sys/types.h>

#include <fstream>
#include <string>

namespace vessel::testing {

// The VMM under the `vessel` process `pid`: the last of the jail's chain of
// children (jail/jail.h: the parent outside, then the VMM, pid 1 of its pid
// namespace), or `pid` itself when it has none (--no-jail).
inline pid_t jailed_vmm(pid_t pid) {
    for (int depth = 0; depth < 4; ++depth) {
        std::ifstream children("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
        pid_t child;
        if (!(children >> child)) break;
        pid = child;
    }
    return pid;
}

}  // namespace vessel::testing
