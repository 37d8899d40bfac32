// Opt-in phase timings for start-up work (VESSEL_TIMINGS=1 prints them to
// stderr), with the page faults taken and the CPU time used in each phase: on
// nested hosts a fault costs microseconds, and a phase whose CPU time is well
// below its wall time waited (KVM sleeps in some ioctls). Costs two clock
// reads and a getrusage per mark when enabled, a branch when not.
#pragma once

#include <sys/resource.h>
#include <time.h>

#include <cstdio>
#include <cstdlib>

namespace vessel {

class PhaseTimer {
public:
    PhaseTimer() : enabled_(std::getenv("VESSEL_TIMINGS") != nullptr) {
        if (enabled_) {
            last_ = start_ = now();
            last_cpu_ = cpu();
            last_faults_ = faults();
        }
    }
    void mark(const char* phase) {
        if (!enabled_) return;
        double t = now(), c = cpu();
        long f = faults();
        std::fprintf(stderr, "vessel: timing %-22s %8.3f ms %4ld faults (total %8.3f ms, cpu %8.3f ms)\n", phase,
                     (t - last_) * 1e3, f - last_faults_, (t - start_) * 1e3, (c - last_cpu_) * 1e3);
        last_ = t;
        last_cpu_ = c;
        last_faults_ = f;
    }

private:
    static double now() {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    static double cpu() {  // this thread's
        timespec ts;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    static long faults() {
        rusage ru;
        return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt + ru.ru_majflt : 0;
    }
    bool enabled_;
    double start_ = 0, last_ = 0, last_cpu_ = 0;
    long last_faults_ = 0;
};

}  // namespace vessel
