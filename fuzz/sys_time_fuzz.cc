// Fuzzes the thin layer's time system calls (thin/sys_time.cc): hostile arguments and guest memory against a real
// Process.
#include "fuzz/thin_syscalls.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    vessel::fuzz::run_syscalls(vessel::fuzz::Family::kTime, data, size);
    return 0;
}
