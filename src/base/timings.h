// Opt-in phase timings for start-up work (VESSEL_TIMINGS=1 prints them to
// stderr). Costs one clock read per mark when enabled, a branch when not.
#pragma once

#include <time.h>

#include <cstdio>
#include <cstdlib>

namespace vessel {

class PhaseTimer {
public:
    PhaseTimer() : enabled_(std::getenv("VESSEL_TIMINGS") != nullptr) {
        if (enabled_) last_ = start_ = now();
    }
    void mark(const char* phase) {
        if (!enabled_) return;
        double t = now();
        std::fprintf(stderr, "vessel: timing %-22s %8.3f ms (total %8.3f ms)\n", phase, (t - last_) * 1e3,
                     (t - start_) * 1e3);
        last_ = t;
    }

private:
    static double now() {
        timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    bool enabled_;
    double start_ = 0, last_ = 0;
};

}  // namespace vessel
