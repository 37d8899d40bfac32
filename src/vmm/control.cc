#include "vmm/control.h"

#include <chrono>
#include <cstdio>

#include <ctime>

namespace vessel::vmm {

const char* to_string(VmState s) {
    switch (s) {
        case VmState::kCreated: return "created";
        case VmState::kRunning: return "running";
        case VmState::kPaused: return "paused";
        case VmState::kExited: return "exited";
    }
    return "unknown";
}

uint64_t thread_cpu_ns(pthread_t thread) {
    clockid_t cid;
    timespec ts;
    if (pthread_getcpuclockid(thread, &cid) != 0 || clock_gettime(cid, &ts) != 0) return 0;
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace vessel::vmm
