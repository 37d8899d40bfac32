// Exit statuses of `vessel run` that are not the guest program's own.
#pragma once

#include <cerrno>

#include "base/result.h"

namespace vessel {

inline constexpr int kExitHostError = 2;        // usage, KVM or host resource problem
inline constexpr int kExitCannotExecute = 126;  // the program is not a loadable static executable
inline constexpr int kExitNotFound = 127;       // the program file does not exist
inline constexpr int kExitGuestCrashed = 139;   // the guest faulted (128 + SIGSEGV)
inline constexpr int kExitShutdown = 143;       // stopped through the control API (128 + SIGTERM)

// The status for a machine that could not be built: the errno class the
// machines put in their errors (ENOENT: no such program or kernel; ENOEXEC:
// not loadable; anything else: a host problem).
inline int exit_status_for(const Error& e) {
    return e.sys_errno == ENOENT ? kExitNotFound : e.sys_errno == ENOEXEC ? kExitCannotExecute : kExitHostError;
}

}  // namespace vessel
