#include "jail/seccomp.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>

namespace vessel::jail {
namespace {

// kTtyFilter, kAllowlistFilter, kFullAllowlistFilter, kVcpuThreadFilter and
// kIoThreadFilter:
// BPF that seccomp_gen made at build time from seccomp_rules.cc with
// libseccomp.
#include "jail/seccomp_filters.inc"

// Loads a filter on every thread (the control API's included), or with
// `this_thread` on the calling thread only.
template <size_t N>
Result<> load(const sock_filter (&filter)[N], bool this_thread = false) {
    sock_fprog prog{static_cast<unsigned short>(N), const_cast<sock_filter*>(filter)};
    if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, this_thread ? 0 : SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0)
        return fail_errno("seccomp: cannot load the filter");
    return {};
}

template <size_t N>
Result<> load_vmm_filters(const sock_filter (&allowlist)[N]) {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail_errno("seccomp: no_new_privs");
    // The terminal filter first (the allowlist refuses the call that loads
    // filters; the kernel applies the stricter answer of the two), and only
    // when there is a terminal to protect: each filter load costs tens of
    // microseconds here (the kernel runs it for every syscall number).
    if (::isatty(0) || ::isatty(1) || ::isatty(2))
        if (auto r = load(kTtyFilter); !r) return r;
    return load(allowlist);
}

}  // namespace

Result<> load_thin_vmm_filters() { return load_vmm_filters(kAllowlistFilter); }
Result<> load_full_vmm_filters() { return load_vmm_filters(kFullAllowlistFilter); }

// No prctl(PR_SET_NO_NEW_PRIVS) here: the process's filter set it on every
// thread (TSYNC does, and new threads inherit it), and refuses prctl.
Result<> load_vcpu_thread_filter() { return load(kVcpuThreadFilter, true); }
Result<> load_io_thread_filter() { return load(kIoThreadFilter, true); }

}  // namespace vessel::jail
