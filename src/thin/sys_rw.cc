// Moving bytes between descriptors and guest memory: read, write and their
// positional and vectored forms, and the read-ahead window's fill.
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include <cstdint>
#include <vector>

#include "thin/process.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

constexpr unsigned kIovBatch = 1024;

// Moves data between a host fd and guest memory page by page, batching the
// pages into readv/writev calls. `to_guest`: a read into guest memory.
int64_t transfer(Process& p, int host_fd, uint64_t va, uint64_t len, bool to_guest, int64_t offset) {
    len = std::min(len, kMaxIo);
    uint64_t done = 0;
    std::vector<iovec> iov;
    iov.reserve(kIovBatch);
    while (done < len) {
        iov.clear();
        uint64_t batch = 0;
        uint64_t want = std::min<uint64_t>(len - done, kIovBatch * memory::kPageSize - memory::kPageSize);
        bool ok = p.mem().for_each_chunk(va + done, want, to_guest, [&](uint8_t* h, uint64_t n) {
            iov.push_back({h, n});
            batch += n;
        });
        if (!ok && iov.empty()) return done ? static_cast<int64_t>(done) : -EFAULT;
        ssize_t n;
        if (offset >= 0)
            n = to_guest ? ::preadv(host_fd, iov.data(), static_cast<int>(iov.size()), offset + done)
                         : ::pwritev(host_fd, iov.data(), static_cast<int>(iov.size()), offset + done);
        else
            n = to_guest ? ::readv(host_fd, iov.data(), static_cast<int>(iov.size()))
                         : ::writev(host_fd, iov.data(), static_cast<int>(iov.size()));
        if (n < 0) return done ? static_cast<int64_t>(done) : -errno;
        done += static_cast<uint64_t>(n);
        if (static_cast<uint64_t>(n) < batch || !ok || n == 0) break;
    }
    return static_cast<int64_t>(done);
}

int64_t io_common(Process& p, IoArgs a, bool to_guest, bool positional) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (f->signalfd) {  // read() only, as Linux's; no offsets
        if (positional) return -ESPIPE;
        return to_guest ? p.read_signalfd(*f, a.buf(), a.count()) : -EINVAL;
    }
    if (f->directory && to_guest) return -EISDIR;
    if (positional && a.offset() < 0) return -EINVAL;
    if (a.count() == 0) return 0;
    int64_t n = transfer(p, f->host.get(), a.buf(), a.count(), to_guest, positional ? a.offset() : -1);
    p.count_io(to_guest, n);
    return n;
}

}  // namespace

int64_t sys_read(Process& p, IoArgs a) {
    int64_t n = io_common(p, a, true, false);
    if (OpenFile* f = file_of(p, a.fd()); f && n > 0)
        p.fill_read_ahead(static_cast<int>(a.fd()), *f, a.buf(), a.count(), n);
    return n;
}

int64_t sys_write(Process& p, IoArgs a) { return io_common(p, a, false, false); }
int64_t sys_pread64(Process& p, IoArgs a) { return io_common(p, a, true, true); }
int64_t sys_pwrite64(Process& p, IoArgs a) { return io_common(p, a, false, true); }

namespace {

// readv, writev and their positional forms (`offset` -1: the file position).
int64_t vectored(Process& p, IovArgs a, bool to_guest, int64_t offset = -1) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (f->signalfd) return -EINVAL;  // read() only
    if (a.iovcnt() > IOV_MAX) return -EINVAL;
    std::vector<iovec> guest(a.iovcnt());
    if (!guest.empty() && !p.mem().read(a.iov(), guest.data(), guest.size() * sizeof(iovec))) return -EFAULT;
    uint64_t total = 0;
    for (const auto& v : guest) {
        if (v.iov_len > kMaxIo) return -EINVAL;
        total += v.iov_len;
        if (total > kMaxIo) return -EINVAL;
    }
    // A position the range would run past (Linux's rw_verify_area).
    if (offset > 0 && total > static_cast<uint64_t>(INT64_MAX - offset)) return -EINVAL;
    int64_t done = 0;
    for (const auto& v : guest) {
        if (!v.iov_len) continue;
        int64_t n = transfer(p, f->host.get(), reinterpret_cast<uint64_t>(v.iov_base), v.iov_len, to_guest,
                             offset < 0 ? -1 : offset + done);
        p.count_io(to_guest, n);
        if (n < 0) return done ? done : n;
        done += n;
        if (static_cast<uint64_t>(n) < v.iov_len) break;
    }
    return done;
}

}  // namespace

int64_t sys_readv(Process& p, IovArgs a) { return vectored(p, a, true); }
int64_t sys_writev(Process& p, IovArgs a) { return vectored(p, a, false); }

int64_t sys_preadv(Process& p, PosIovArgs a) { return a.offset() < 0 ? -EINVAL : vectored(p, a, true, a.offset()); }
int64_t sys_pwritev(Process& p, PosIovArgs a) { return a.offset() < 0 ? -EINVAL : vectored(p, a, false, a.offset()); }

// The *2 forms without RWF_* flags; offset -1 is the file position.
int64_t sys_preadv2(Process& p, PosIovArgs a) {
    if (a.flags()) return -EOPNOTSUPP;
    return a.offset() < -1 ? -EINVAL : vectored(p, a, true, a.offset());
}
int64_t sys_pwritev2(Process& p, PosIovArgs a) {
    if (a.flags()) return -EOPNOTSUPP;
    return a.offset() < -1 ? -EINVAL : vectored(p, a, false, a.offset());
}

int64_t sys_fallocate(Process& p, FallocateArgs a) {
    OpenFile* f = file_of(p, a.fd());
    if (!f) return -EBADF;
    if (f->signalfd) return -ENODEV;
    return ::fallocate(f->host.get(), a.mode(), a.offset(), a.len()) < 0 ? -errno : 0;
}

namespace {

// A loff_t the guest passes by pointer (0: none): read before a call that
// moves it, written back after.
struct GuestOffset {
    uint64_t ptr;
    loff_t value = 0;
    loff_t* host() { return ptr ? &value : nullptr; }
    bool load(Process& p) { return !ptr || p.mem().read_obj(ptr, value); }
    bool store(Process& p) const { return !ptr || p.mem().write_obj(ptr, value); }
};

// The most one call moves, as Linux's MAX_RW_COUNT.
constexpr uint64_t kMaxRwCount = 0x7ffff000;

}  // namespace

int64_t sys_sendfile(Process& p, SendfileArgs a) {
    OpenFile* out = file_of(p, a.out_fd());
    OpenFile* in = file_of(p, a.in_fd());
    if (!out || !in) return -EBADF;
    if (out->signalfd || in->signalfd) return -EINVAL;
    GuestOffset off{a.offset()};
    if (!off.load(p)) return -EFAULT;
    const ssize_t n = ::sendfile(out->host.get(), in->host.get(), off.host(), std::min(a.count(), kMaxRwCount));
    if (n < 0) return -errno;
    return off.store(p) ? n : -EFAULT;
}

int64_t sys_copy_file_range(Process& p, CopyFileRangeArgs a) {
    OpenFile* in = file_of(p, a.fd_in());
    OpenFile* out = file_of(p, a.fd_out());
    if (!in || !out) return -EBADF;
    if (in->signalfd || out->signalfd) return -EINVAL;
    GuestOffset off_in{a.off_in()}, off_out{a.off_out()};
    if (!off_in.load(p) || !off_out.load(p)) return -EFAULT;
    const ssize_t n = ::copy_file_range(in->host.get(), off_in.host(), out->host.get(), off_out.host(),
                                        std::min(a.len(), kMaxRwCount), static_cast<unsigned>(a.flags()));
    if (n < 0) return -errno;
    return off_in.store(p) && off_out.store(p) ? n : -EFAULT;
}

void Process::fill_read_ahead(int fd, OpenFile& file, uint64_t buf, uint64_t count, int64_t got) {
    // Only a full, small read of a regular file suggests more small reads.
    if (!entry_ || !entry_->shared().enabled || static_cast<uint64_t>(got) != count || count > kReadAheadMaxRead ||
        windows_wasted_ >= kReadAheadMaxWasted)
        return;
    struct stat st;
    if (::fstat(file.host.get(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    // The entry code writes into [lo, hi) without asking: a VMA that is
    // writable now. Any call that changes the memory map settles first.
    const memory::Vma* v = as_->find_vma(buf);
    if (!v || !(v->prot & memory::kProtWrite) || buf + count > v->end) return;
    if (!is_window(window_va_)) {  // never mapped, or the guest unmapped it
        auto va = as_->find_free(kReadAheadWindow);
        if (!va || !as_->map_fixed(*va, kReadAheadWindow, memory::kProtRead | memory::kProtWrite, kReadAheadName))
            return;
        window_va_ = *va;
    }
    int64_t n = transfer(*this, file.host.get(), window_va_, window_size_, true, -1);
    if (n <= 0) return;
    count_io(true, n);
    GuestShared& s = entry_->shared();
    s.win_fd = static_cast<uint64_t>(fd);
    s.win_va = window_va_;
    s.win_len = static_cast<uint64_t>(n);
    s.win_pos = 0;
    s.safe_lo = v->start;
    s.safe_hi = v->end;
    entry_->note_shared_write();
}

}  // namespace vessel::thin
