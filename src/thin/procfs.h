// The guest's /proc: files generated from the VM's own state (its memory,
// its one process, its mounts), never read from the host's /proc. Each
// open gets a snapshot of the text in a sealed memfd, as reading a /proc
// file once gives one consistent view. Directories and most of
// /proc/self's links are not there yet (docs/syscalls.md, "/proc").
#pragma once

#include <string>

#include <memory>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "thin/fd_table.h"

namespace vessel::thin {

class Process;

namespace procfs {

// Whether `abs` (a normalised guest path) is /proc or below it.
bool covers(const std::string& abs);

// The text of the /proc file at `abs`: ENOENT for names /proc does not
// have, EISDIR for its directories.
Result<std::string> text(Process& p, const std::string& abs);

// A read-only descriptor holding text(p, abs), for open(2) and stat(2).
// EACCES when `flags` ask for writing (no /proc file here is writable);
// EISDIR for a directory (open_dir() opens those).
Result<Fd> open(Process& p, const std::string& abs, int flags);

// open(2) of a /proc path: a file (a sealed memfd of its text) or a
// directory (its entries as of now, a stand-in descriptor on the host).
// Errors as open(2) gives them: ENOTDIR for O_DIRECTORY on a file, EISDIR
// for writing to a directory, EACCES for writing to a file.
Result<std::shared_ptr<OpenFile>> open_file(Process& p, const std::string& abs, int flags);

// The entries of the /proc directory at `abs` ("." and ".." first);
// ENOTDIR for a file, ENOENT for none.
Result<std::vector<OpenFile::Entry>> list(Process& p, const std::string& abs);

// What a /proc directory's descriptor holds on the host: a directory
// nothing is read from or written through (the VMM's own /proc, whose
// mode and owner cannot be changed), for fstat and fchdir.
Result<Fd> directory_stand_in();

// The target of a /proc symbolic link ("/proc/self" → "1", the cwd,
// "fd/N"); EINVAL for a file that is not a link, ENOENT for none.
// /proc/self/exe stays ENOENT: the guest-side entry code answers it so
// (docs/thin-vm.md).
Result<std::string> readlink(Process& p, const std::string& abs);

}  // namespace procfs
}  // namespace vessel::thin
