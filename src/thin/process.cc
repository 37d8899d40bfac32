#include "thin/process.h"

#include <fcntl.h>
#include <unistd.h>

#include <memory>

namespace vessel::thin {

Process::Process(memory::AddressSpace& as, Sandbox sandbox, CpuAccess& cpu, ProcessOptions options)
    : as_(&as), sandbox_(std::move(sandbox)), cpu_(&cpu), options_(options) {}

void Process::attach_stdio() {
    for (int fd = 0; fd < 3; ++fd) {
        int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup < 0) continue;  // the caller closed it: so is the guest's
        auto f = std::make_shared<OpenFile>();
        f->host.reset(dup);
        fds_.install_at(fd, std::move(f), false);
    }
}

int64_t Process::handle(const SyscallArgs& args) {
    const SyscallInfo* info = syscall_table().find(args.nr);
    int64_t result;
    if (info && info->handler) {
        ++counts_[args.nr];
        result = info->handler(*this, args);
    } else {
        if (args.nr < kMaxSyscall) ++counts_[args.nr];
        ++unsupported_;
        result = -ENOSYS;
    }
    if (options_.trace) trace_syscall(options_.trace_out, *this, args, result);
    return result;
}

int64_t Process::read_path(int dirfd, uint64_t ptr, std::string& out, bool allow_empty) {
    auto s = mem().read_cstring(ptr, PATH_MAX - 1);
    if (!s) return -s.error().sys_errno;
    if (s->empty() && !allow_empty) return -ENOENT;
    std::string base = cwd_;
    if ((s->empty() || (*s)[0] != '/') && dirfd != AT_FDCWD) {
        auto* e = fds_.get(dirfd);
        if (!e) return -EBADF;
        if (s->empty()) {  // AT_EMPTY_PATH: the descriptor itself
            out.clear();
            return 0;
        }
        if (!e->file->directory) return -ENOTDIR;
        base = e->file->guest_path;
    }
    out = Sandbox::normalize(base, *s);
    // A trailing slash demands a directory; keep that meaning for the caller.
    if (s->size() > 1 && s->back() == '/') out += '/';
    return 0;
}

}  // namespace vessel::thin
