#include "thin/fd_table.h"

#include <cerrno>

namespace vessel::thin {

int FdTable::install(std::shared_ptr<OpenFile> file, bool cloexec, int min) {
    if (min < 0 || min >= kMaxFds) return -EINVAL;
    int fd = min;
    for (auto it = entries_.lower_bound(min); it != entries_.end() && it->first == fd; ++it) ++fd;
    if (fd >= kMaxFds) return -EMFILE;
    entries_[fd] = Entry{std::move(file), cloexec};
    return fd;
}

int FdTable::install_at(int fd, std::shared_ptr<OpenFile> file, bool cloexec) {
    if (fd < 0 || fd >= kMaxFds) return -EBADF;
    entries_[fd] = Entry{std::move(file), cloexec};
    return fd;
}

FdTable::Entry* FdTable::get(int fd) {
    auto it = entries_.find(fd);
    return it == entries_.end() ? nullptr : &it->second;
}

int FdTable::close(int fd) { return entries_.erase(fd) ? 0 : -EBADF; }

}  // namespace vessel::thin
