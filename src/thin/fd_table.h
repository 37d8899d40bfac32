// The guest's file-descriptor table.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "base/fd.h"

namespace vessel::thin {

// An open file description, shared by dup()ed descriptors like Linux's.
struct OpenFile {
    Fd host;                 // the host descriptor the calls go to
    std::string guest_path;  // absolute guest path (for *at() and fchdir); empty for pipes/stdio
    bool directory = false;
    int stdio = -1;  // 0-2 when this is the host's stdin/stdout/stderr
};

class FdTable {
public:
    static constexpr int kMaxFds = 1024;  // RLIMIT_NOFILE the guest sees

    struct Entry {
        std::shared_ptr<OpenFile> file;
        bool cloexec = false;
    };

    // Lowest free descriptor >= `min`, or -EMFILE.
    int install(std::shared_ptr<OpenFile> file, bool cloexec, int min = 0);
    // Puts `file` at exactly `fd`, closing what was there.
    int install_at(int fd, std::shared_ptr<OpenFile> file, bool cloexec);
    Entry* get(int fd);
    int close(int fd);
    const std::map<int, Entry>& entries() const { return entries_; }

private:
    std::map<int, Entry> entries_;
};

}  // namespace vessel::thin
