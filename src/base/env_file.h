// Environment files (`vessel run --env-file FILE`): KEY=VALUE entries, one
// per line (lines starting with '#' and empty lines skipped, as docker's
// --env-file), or separated by NUL bytes when the file holds any, as
// /proc/PID/environ does: vesseld writes them that way, so values may hold
// newlines. They keep a VM's environment off the VMM's command line, which
// every local user can read in /proc/PID/cmdline.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "base/result.h"

namespace vessel {

inline constexpr size_t kMaxEnvFile = 1 << 20;

// The entries of the file at `path` (a regular file, never followed through
// a link; at most kMaxEnvFile bytes), each checked to be KEY=VALUE with a
// non-empty KEY.
Result<std::vector<std::string>> read_env_file(const std::string& path);

// The NUL-separated form of `vars`.
std::string encode_env_file(const std::vector<std::pair<std::string, std::string>>& vars);

}  // namespace vessel
