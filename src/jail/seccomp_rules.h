// The rules of the VMM's seccomp filters, built with libseccomp. Used at
// build time only (seccomp_gen.cc turns them into BPF, which seccomp.cc
// loads): building them at run time costs ~0.8 ms of a ~4 ms start.
#pragma once

#include <seccomp.h>

namespace vessel::jail {

// The first filter: allows everything but faking terminal input (TIOCSTI)
// and console tricks (TIOCLINUX). False on a libseccomp error.
bool add_tty_rules(scmp_filter_ctx ctx);
// The allowlist (default: EPERM) of what a running thin VMM calls.
bool add_allowlist_rules(scmp_filter_ctx ctx);
// A full machine's VMM, every thread: the thin VMM's allowlist plus the
// AF_UNIX sockets a vsock device connects to host listeners with.
bool add_full_allowlist_rules(scmp_filter_ctx ctx);
// Stacked on each vCPU thread of a full machine: what an exit handler does
// (KVM ioctls, device register access, console output, eventfd signals,
// memory for its own allocations). No file, socket or process calls.
bool add_vcpu_thread_rules(scmp_filter_ctx ctx);
// Stacked on a full machine's I/O thread: the devices' back-ends on
// descriptors they hold (disk reads and writes, TAP, eventfds, timers) and
// the AF_UNIX sockets of vsock. No path is opened, made or removed there.
bool add_io_thread_rules(scmp_filter_ctx ctx);

}  // namespace vessel::jail
