// The guest's /proc: files generated from the VM's own state (its memory,
// its one process, its mounts), never read from the host's /proc. Each
// open gets a snapshot of the text in a sealed memfd, as reading a /proc
// file once gives one consistent view. Directories and most of
// /proc/self's links are not there yet (docs/syscalls.md, "/proc").
#pragma once

#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace vessel::thin {

class Process;

namespace procfs {

// Whether `abs` (a normalised guest path) is /proc or below it.
bool covers(const std::string& abs);

// The text of the /proc file at `abs`: ENOENT for names /proc does not
// have, EISDIR for its directories.
Result<std::string> text(Process& p, const std::string& abs);

// A read-only descriptor holding text(p, abs), for open(2) and stat(2).
// EACCES when `flags` ask for writing (no /proc file here is writable).
Result<Fd> open(Process& p, const std::string& abs, int flags);

// The target of a /proc symbolic link ("/proc/self" → "1", the cwd,
// "fd/N"); EINVAL for a file that is not a link, ENOENT for none.
// /proc/self/exe stays ENOENT: the guest-side entry code answers it so
// (docs/thin-vm.md).
Result<std::string> readlink(Process& p, const std::string& abs);

}  // namespace procfs
}  // namespace vessel::thin
