// Fuzzes the thin layer's file system calls (thin/sys_rw.cc, sys_stat.cc, sys_path.cc, sys_fd.cc): hostile
// arguments and guest memory against a real Process.
#include "fuzz/thin_syscalls.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    vessel::fuzz::run_syscalls(vessel::fuzz::Family::kFiles, data, size);
    return 0;
}
