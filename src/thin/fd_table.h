// The guest's file-descriptor table.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"

namespace vessel::thin {

// An open file description, shared by dup()ed descriptors like Linux's.
struct OpenFile {
    Fd host;                 // the host descriptor the calls go to
    std::string guest_path;  // absolute guest path (for *at() and fchdir); empty for pipes/stdio
    bool directory = false;
    int stdio = -1;  // 0-2 when this is the host's stdin/stdout/stderr
    // A synthetic directory (thin/procfs.h): its entries as they were when
    // it was opened, served by getdents64 from `next` on; `host` is then
    // only something fstat calls a directory.
    struct Entry {
        std::string name;
        unsigned char type;  // DT_DIR, DT_REG, DT_LNK
    };
    std::shared_ptr<const std::vector<Entry>> entries;
    size_t next = 0;
    // A signalfd: the signals it reads (thin/signals.cc). `host` is then an
    // eventfd the process keeps readable while one of them is pending, for
    // poll, select and epoll; `raised` says whether it is.
    struct SignalFd {
        uint64_t mask = 0;
        bool raised = false;
    };
    std::optional<SignalFd> signalfd;
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
