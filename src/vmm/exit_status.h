// Exit statuses of `vessel run` that are not the guest program's own.
#pragma once

namespace vessel {

inline constexpr int kExitHostError = 2;        // usage, KVM or host resource problem
inline constexpr int kExitCannotExecute = 126;  // the program is not a loadable static executable
inline constexpr int kExitNotFound = 127;       // the program file does not exist
inline constexpr int kExitGuestCrashed = 139;   // the guest faulted (128 + SIGSEGV)
inline constexpr int kExitShutdown = 143;       // stopped through the control API (128 + SIGTERM)

}  // namespace vessel
