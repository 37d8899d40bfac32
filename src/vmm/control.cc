#include "vmm/control.h"

#include <chrono>
#include <cstdio>

#include <ctime>

namespace vessel::vmm {

std::string now_rfc3339() {
    // Calendar arithmetic only: glibc's gmtime_r would first load the time
    // zone database (/etc/localtime), a cost on every VM start.
    using namespace std::chrono;
    auto now = floor<seconds>(system_clock::now());
    auto day = floor<days>(now);
    year_month_day ymd{day};
    hh_mm_ss hms{now - day};
    char buf[40];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02ld:%02ld:%02ldZ", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                  static_cast<long>(hms.seconds().count()));
    return buf;
}

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
