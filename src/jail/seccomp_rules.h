// The rules of the thin VMM's seccomp filters, built with libseccomp. Used
// at build time only (seccomp_gen.cc turns them into BPF, which confine.cc
// loads): building them at run time costs ~0.8 ms of a ~4 ms start.
#pragma once

#include <seccomp.h>

namespace vessel::jail {

// The first filter: allows everything but faking terminal input (TIOCSTI)
// and console tricks (TIOCLINUX). False on a libseccomp error.
bool add_tty_rules(scmp_filter_ctx ctx);
// The allowlist (default: EPERM) of what a running thin VMM calls.
bool add_allowlist_rules(scmp_filter_ctx ctx);

}  // namespace vessel::jail
