#include "thin/process.h"
#include "thin/procfs.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>

namespace vessel::thin {

Process::Process(memory::AddressSpace& as, Sandbox sandbox, CpuAccess& cpu, ProcessOptions options)
    : as_(&as), sandbox_(std::make_shared<Sandbox>(std::move(sandbox))), cpu_(&cpu), options_(options) {}

std::unique_ptr<Process> Process::fork_child(memory::AddressSpace& as, CpuAccess& cpu, int64_t pid, int signal_fd,
                                             const CloneRequest& request) const {
    ProcessOptions opts = options_;
    opts.pid = pid;
    opts.signal_fd = signal_fd;
    std::unique_ptr<Process> child(new Process(as, sandbox_, cpu, std::move(opts)));
    Process& c = *child;
    c.fds_ = fds_;  // the same open file descriptions
    c.cwd_ = cwd_;
    c.brk_start_ = brk_start_;
    c.brk_ = brk_;
    c.heap_end_ = heap_end_;
    c.self_exe_strings_ = self_exe_strings_;
    c.umask_ = umask_;
    c.signal_mask_ = signal_mask_;
    c.sigactions_ = sigactions_;
    c.sigaltstack_ = sigaltstack_;
    c.prctl_state_ = prctl_state_;
    c.prctl_state_.pdeathsig = 0;  // not inherited
    c.window_va_ = window_va_;
    c.window_size_ = window_size_;
    c.windows_wasted_ = windows_wasted_;
    c.clear_child_tid_ = request.flags & CLONE_CHILD_CLEARTID ? request.child_tid : 0;
    if (entry_)
        if (auto entry = GuestEntry::find(as)) {
            entry->reset_counts();  // the copy holds the parent's
            c.attach_guest_entry(std::move(*entry));
        }
    c.set_clear_child_tid(c.clear_child_tid_);
    if (request.flags & CLONE_CHILD_SETTID) {
        const int32_t tid = static_cast<int32_t>(pid);
        (void)c.mem().write(request.child_tid, &tid, sizeof tid);  // a bad address is the child's loss, as in Linux
    }
    return child;
}

Process::Process(memory::AddressSpace& as, std::shared_ptr<Sandbox> sandbox, CpuAccess& cpu, ProcessOptions options)
    : as_(&as), sandbox_(std::move(sandbox)), cpu_(&cpu), options_(std::move(options)) {}

void Process::set_credentials(uint32_t uid, uint32_t gid) {
    options_.uid = uid;
    options_.gid = gid;
    if (!entry_) return;
    entry_->shared().uid = uid;
    entry_->shared().gid = gid;
    entry_->note_shared_write();
}

void Process::attach_stdio() {
    for (int fd = 0; fd < 3; ++fd) {
        int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup < 0) continue;  // the caller closed it: so is the guest's
        auto f = std::make_shared<OpenFile>();
        f->host.reset(dup);
        f->stdio = fd;
        fds_.install_at(fd, std::move(f), false);
    }
}

void Process::attach_guest_entry(GuestEntry entry) {
    GuestShared& s = entry.shared();
    s.enabled = options_.trace ? 0 : 1;
    s.uid = options_.uid;
    s.gid = options_.gid;
    s.pid = static_cast<uint64_t>(options_.pid);
    entry.note_shared_write();
    // A restored guest may have a window already: adopt its buffer if it is
    // still the VMA we mapped, so the next fill reuses it.
    if (is_window(s.win_va)) window_va_ = s.win_va;
    s.clk_valid = 0;  // calibrated afresh in every process: TSCs differ between hosts
    s.fsgsbase = options_.fsgsbase ? 1 : 0;
    s.tid_address = clear_child_tid_;
    s.rlim_stack_cur = guest_rlimit(RLIMIT_STACK).cur;
    s.rlim_stack_max = guest_rlimit(RLIMIT_STACK).max;
    s.rand_pos = GUEST_RAND_POOL;  // empty until refilled: a restored guest gets fresh bytes
    entry_ = std::move(entry);
    refill_random();
    publish_brk();
    publish_memory_map();
}

void Process::refill_random() {
    GuestShared& s = entry_->shared();
    if (std::atomic_ref<uint64_t>(s.rand_pos).load(std::memory_order_relaxed) == 0) return;
    if (::getrandom(s.rand_pool, sizeof s.rand_pool, GRND_NONBLOCK) == sizeof s.rand_pool) s.rand_pos = 0;
    entry_->note_shared_write();
}

uint64_t Process::clear_child_tid() const { return entry_ ? entry_->shared().tid_address : clear_child_tid_; }

void Process::set_clear_child_tid(uint64_t address) {
    clear_child_tid_ = address;
    if (!entry_) return;
    entry_->shared().tid_address = address;
    entry_->note_shared_write();
}

void Process::publish_memory_map() {
    if (!entry_) return;
    const memory::Vma* v = as_->find_vma(memory::AddressSpace::kStackTop - 1);
    const bool ok = v && v->name == "[stack]" && (v->prot & memory::kProtWrite);
    entry_->shared().stack_lo = ok ? v->start : 0;
    entry_->shared().stack_hi = ok ? v->end : 0;
    // The program's data: the mapping that ends where the loader put the
    // stubs, right after the program's last segment and right before the
    // heap (loader/program.cc).
    const memory::Vma* stubs = as_->find_vma(brk_start_ - 1);
    const memory::Vma* data = stubs && stubs->name == kStubAreaName ? as_->find_vma(stubs->start - 1) : nullptr;
    const int rw = memory::kProtRead | memory::kProtWrite;
    const bool data_ok = data && (data->prot & rw) == rw;
    entry_->shared().data_lo = data_ok ? data->start : 0;
    entry_->shared().data_hi = data_ok ? data->end : 0;
    // Each string, unless unmapped, replaced or writable since (then a write
    // could change it without the VMM seeing).
    static constexpr char kSelfExe[] = "/proc/self/exe";
    for (size_t i = 0; i < kSelfExeStrings; ++i) {
        const uint64_t va = self_exe_strings_[i];
        const memory::Vma* s = va ? as_->find_vma(va) : nullptr;
        char text[sizeof kSelfExe];
        const bool ok = s && !(s->prot & memory::kProtWrite) && va + sizeof text <= s->end &&
                        as_->view().read(va, text, sizeof text) && std::memcmp(text, kSelfExe, sizeof text) == 0;
        entry_->shared().self_exe[i] = ok ? va : 0;
    }
    entry_->note_shared_write();
}

void Process::set_self_exe_strings(const std::array<uint64_t, kSelfExeStrings>& va) {
    self_exe_strings_ = va;
    publish_memory_map();
}

namespace {

uint64_t host_ns(clockid_t id) {
    timespec ts;
    ::clock_gettime(id, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// (ticks * mult) >> 32, as the entry code's mulq/shrd computes it.
uint64_t scale(uint64_t ticks, uint64_t mult) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(ticks) * mult) >> 32);
}

}  // namespace

void Process::update_clock() {
    if (!entry_ || !entry_->shared().enabled) return;
    const uint64_t tsc = __rdtsc() + options_.tsc_offset, mono = host_ns(CLOCK_MONOTONIC),
                   real = host_ns(CLOCK_REALTIME);
    Clock& c = clock_;
    if (!c.started) {
        c = {.started = true, .first_tsc = tsc, .first_mono = mono};
        return;
    }
    if (tsc <= c.first_tsc || mono < c.first_mono + kClockCalibrationNs) return;
    // The rate over the whole run so far: ns per tick, 32.32 fixed point.
    const uint64_t mult =
        static_cast<uint64_t>((static_cast<unsigned __int128>(mono - c.first_mono) << 32) / (tsc - c.first_tsc));
    if (!c.valid) {
        c.valid = true;
        c.mono = mono;
        c.real = real;
    } else {
        // Where the published formula has got to. MONOTONIC never goes back:
        // it carries on from there if the host's clock is behind it.
        // REALTIME does too, unless the host's clock was set (over 10 ms off).
        const uint64_t at = tsc > c.tsc ? tsc - c.tsc : 0;
        const uint64_t pm = c.mono + scale(at, c.mult), pr = c.real + scale(at, c.mult);
        c.mono = std::max(pm, mono);
        const uint64_t off = real > pr ? real - pr : pr - real;
        c.real = off > 10'000'000 ? real : std::max(pr, real);
    }
    c.tsc = tsc;
    c.mult = mult;
    GuestShared& s = entry_->shared();
    s.clk_tsc = c.tsc;
    s.clk_mult = c.mult;
    s.clk_mono = c.mono;
    s.clk_real = c.real;
    s.clk_valid = 1;
    entry_->note_shared_write();
}

std::optional<uint64_t> Process::clock_ns(bool realtime) {
    update_clock();
    if (!clock_.valid) return std::nullopt;
    return realtime ? clock_.real : clock_.mono;
}

uint64_t Process::calls(unsigned nr) const {
    if (nr >= kMaxSyscall) return 0;
    uint64_t n = std::atomic_ref<const uint64_t>(counts_[nr]).load(std::memory_order_relaxed);
    if (entry_ && nr < kGuestCounted)
        n += std::atomic_ref<const uint64_t>(entry_->counts()[nr]).load(std::memory_order_relaxed);
    return n;
}

void Process::absorb_counts(const Process& ended) {
    auto add = [](uint64_t& to, uint64_t n) {
        if (n) std::atomic_ref<uint64_t>(to).fetch_add(n, std::memory_order_relaxed);
    };
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr) add(counts_[nr], ended.calls(nr));
    uint64_t undelivered = 0;
    for (int sig = 1; sig <= 64; ++sig) {
        const uint64_t n = std::atomic_ref<const uint64_t>(ended.undelivered_[sig - 1]).load(std::memory_order_relaxed);
        add(undelivered_[sig - 1], n);
        undelivered += n;
    }
    const uint64_t threads = std::atomic_ref<const uint64_t>(ended.refused_threads_).load(std::memory_order_relaxed);
    add(refused_threads_, threads);
    add(unsupported_, ended.unsupported_calls() - undelivered - threads);
    add(io_read_, ended.io_read_bytes());
    add(io_write_, ended.io_write_bytes());
    add(out_of_memory_, ended.out_of_memory());
}

std::string Process::unsupported_summary() const {
    std::vector<std::pair<uint64_t, unsigned>> seen;  // (count, number)
    uint64_t named = 0;
    for (unsigned nr = 0; nr < kMaxSyscall; ++nr) {
        const SyscallInfo* info = syscall_table().find(nr);
        if (info && info->handler) continue;
        if (refusal_expected(nr)) {  // would send the user after the wrong call
            named += calls(nr);
            continue;
        }
        if (uint64_t n = calls(nr)) {
            seen.emplace_back(n, nr);
            named += n;
        }
    }
    std::sort(seen.begin(), seen.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
    });
    std::string out;
    for (const auto& [n, nr] : seen)
        out += (out.empty() ? "" : ", ") + std::string(syscall_name(nr)) + " x" + std::to_string(n);
    uint64_t signals = 0;
    for (int sig = 1; sig <= 64; ++sig)
        if (uint64_t n = std::atomic_ref<const uint64_t>(undelivered_[sig - 1]).load(std::memory_order_relaxed)) {
            const char* name = sigabbrev_np(sig);
            out += (out.empty() ? "" : ", ") + std::string("signal ") +
                   (name ? "SIG" + std::string(name) : std::to_string(sig)) +
                   " (handlers and stops are not delivered) x" + std::to_string(n);
            signals += n;
        }
    const uint64_t threads = std::atomic_ref<const uint64_t>(refused_threads_).load(std::memory_order_relaxed);
    if (threads)
        out += (out.empty() ? "" : ", ") + std::string("threads (clone with CLONE_VM) x") + std::to_string(threads);
    const uint64_t total = unsupported_calls() - signals - threads;
    if (total > named) out += (out.empty() ? "" : ", ") + std::to_string(total - named) + " more with unknown numbers";
    return out;
}

uint64_t Process::unsupported_calls() const {
    uint64_t n = std::atomic_ref<const uint64_t>(unsupported_).load(std::memory_order_relaxed) +
                 std::atomic_ref<const uint64_t>(refused_threads_).load(std::memory_order_relaxed);
    for (const uint64_t& s : undelivered_) n += std::atomic_ref<const uint64_t>(s).load(std::memory_order_relaxed);
    if (entry_)
        for (unsigned nr = 0; nr < kGuestCounted; ++nr)
            if (const SyscallInfo* info = syscall_table().find(nr); !info || !info->handler)
                n += std::atomic_ref<const uint64_t>(entry_->counts()[nr]).load(std::memory_order_relaxed);
    return n;
}

bool Process::is_window(uint64_t va) const {
    const memory::Vma* v = as_->find_vma(va);
    return v && v->start == va && v->end - v->start == kReadAheadWindow && v->name == kReadAheadName;
}

void Process::publish_brk() {
    if (!entry_) return;
    entry_->shared().brk_start = brk_start_;
    entry_->shared().brk = brk_;
    entry_->shared().brk_limit = heap_end_;
    entry_->note_shared_write();
}

void Process::set_brk_start(uint64_t start) {
    brk_start_ = brk_ = start;
    heap_end_ = memory::page_align_up(start);
    (void)grow_heap(*this, heap_end_);  // best effort: sys_brk maps what it needs
    publish_brk();
    publish_memory_map();  // the data range is found from the heap's start
}

uint64_t Process::guest_brk() const {
    if (!entry_) return brk_;
    const uint64_t v = std::atomic_ref<const uint64_t>(entry_->shared().brk).load(std::memory_order_relaxed);
    return v >= brk_ && v <= heap_end_ ? v : brk_;
}

void Process::refresh_heap_end() {
    uint64_t end = memory::page_align_up(brk_);
    for (const memory::Vma* v; (v = as_->find_vma(end)) && v->name == "[heap]" && (v->prot & memory::kProtWrite) &&
                               (v->prot & memory::kProtRead);)
        end = v->end;
    heap_end_ = end;
}

bool Process::read_ahead_neutral(const SyscallArgs& a) {
    const SyscallInfo* info = syscall_table().find(a.nr);
    if (!info) return false;
    if (info->effect & kWindowSafe) return true;
    if (!(info->effect & kWindowSafeElsewhere)) return false;
    // A write: only one to the window's own file can change what it holds.
    const uint64_t fd = IoArgs(a).fd(), win_fd = entry_->shared().win_fd;
    if (fd == win_fd || fd > INT32_MAX || win_fd > INT32_MAX) return false;
    auto* target = fds_.get(static_cast<int>(fd));
    auto* window = fds_.get(static_cast<int>(win_fd));
    struct stat t, w;
    if (!target || !window || ::fstat(target->file->host.get(), &t) != 0) return false;
    if (!S_ISREG(t.st_mode)) return true;  // a pipe or terminal
    return ::fstat(window->file->host.get(), &w) == 0 && (t.st_dev != w.st_dev || t.st_ino != w.st_ino);
}

void Process::settle_read_ahead() {
    GuestShared& s = entry_->shared();
    const uint64_t fd = s.win_fd, len = s.win_len, pos = s.win_pos;
    if (fd == kNoWindow) return;
    s.win_fd = kNoWindow;
    s.win_len = s.win_pos = 0;
    s.safe_lo = s.safe_hi = 0;
    entry_->note_shared_write();
    // Guest-written values: a bad one only drops the window.
    if (len > kReadAheadWindow || pos > len || fd > INT32_MAX) return;
    if (pos == 0) {
        ++windows_wasted_;
        window_size_ = kReadAheadFirst;
    } else {
        windows_wasted_ = 0;
        if (pos == len) window_size_ = std::min(2 * window_size_, kReadAheadWindow);
    }
    if (pos == len) return;
    if (auto* e = fds_.get(static_cast<int>(fd)))
        (void)::lseek(e->file->host.get(), -static_cast<off_t>(len - pos), SEEK_CUR);
}

namespace {

// What a descriptor without a path is, in the words of the snapshot
// refusal: the host's /proc/self/fd link names its kind ("pipe:[...]",
// "anon_inode:[eventfd]").
std::string anonymous_kind(int host_fd) {
    char link[64];
    ssize_t n = ::readlink(("/proc/self/fd/" + std::to_string(host_fd)).c_str(), link, sizeof link - 1);
    std::string what(link, n > 0 ? static_cast<size_t>(n) : 0);
    if (what.starts_with("pipe:")) return "a pipe";
    if (what.find("eventpoll") != std::string::npos) return "an epoll set";
    if (what.find("eventfd") != std::string::npos) return "an eventfd";
    if (what.find("timerfd") != std::string::npos) return "a timerfd";
    return "not a file";
}

}  // namespace

Result<ProcessSnapshot> Process::capture() const {
    ProcessSnapshot s;
    s.cwd = cwd_;
    s.brk_start = brk_start_;
    s.brk = guest_brk();
    s.umask = umask_;
    s.clear_child_tid = clear_child_tid();
    s.signal_mask = signal_mask_;
    s.sigactions = sigactions_;
    s.sigaltstack = sigaltstack_;
    s.pending_signals = pending_signals_;
    s.pending_codes = pending_code_;
    s.restore_mask = restore_mask_;
    ::getitimer(ITIMER_REAL, &s.real_timer);  // the guest's: it owns the VMM's timer
    std::map<const OpenFile*, uint32_t> index;
    for (const auto& [fd, entry] : fds_.entries()) {
        const OpenFile* f = entry.file.get();
        auto it = index.find(f);
        if (it == index.end()) {
            ProcessSnapshot::File file;
            if (f->stdio >= 0) {
                file.kind = ProcessSnapshot::File::kStdio;
                file.stdio = f->stdio;
            } else if (!f->guest_path.empty()) {
                file.guest_path = f->guest_path;
                file.flags = ::fcntl(f->host.get(), F_GETFL);
                file.offset = ::lseek(f->host.get(), 0, SEEK_CUR);
                if (file.offset < 0) file.offset = 0;  // not seekable (a device)
                file.directory = f->directory;
            } else {
                return fail("guest fd " + std::to_string(fd) + " is " + anonymous_kind(f->host.get()) +
                                "; it cannot be snapshotted (pipes, epoll sets, eventfds and timerfds cannot yet)",
                            EBUSY);
            }
            it = index.emplace(f, static_cast<uint32_t>(s.files.size())).first;
            s.files.push_back(std::move(file));
        }
        s.descriptors.push_back({fd, it->second, entry.cloexec});
    }
    return s;
}

Result<> Process::restore(const ProcessSnapshot& s) {
    cwd_ = s.cwd;
    brk_start_ = s.brk_start;
    brk_ = s.brk;
    refresh_heap_end();
    publish_brk();
    publish_memory_map();
    umask_ = s.umask & 0777;
    set_clear_child_tid(s.clear_child_tid);
    signal_mask_ = s.signal_mask;
    sigactions_ = s.sigactions;
    sigaltstack_ = s.sigaltstack;
    pending_signals_ = s.pending_signals;
    pending_code_ = s.pending_codes;
    restore_mask_ = s.restore_mask;
    if (restore_mask_) *restore_mask_ &= ~kUnblockable;
    std::vector<std::shared_ptr<OpenFile>> files;
    for (const auto& file : s.files) {
        auto f = std::make_shared<OpenFile>();
        if (file.kind == ProcessSnapshot::File::kStdio) {
            if (file.stdio < 0 || file.stdio > 2) return fail("restore: bad stdio stream", EINVAL);
            int dup = ::fcntl(file.stdio, F_DUPFD_CLOEXEC, 3);
            if (dup < 0) return fail_errno("restore: stdio " + std::to_string(file.stdio));
            f->host.reset(dup);
            f->stdio = file.stdio;
        } else {
            int flags = file.flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC);
            if (procfs::covers(file.guest_path)) {  // made afresh: /proc says how things are now
                auto proc = procfs::open_file(*this, file.guest_path, flags);
                if (!proc)
                    return fail(
                        "restore: cannot reopen " + file.guest_path + ": " + std::strerror(proc.error().sys_errno),
                        proc.error().sys_errno);
                files.push_back(std::move(*proc));
                continue;
            }
            auto fd = sandbox_->open(file.guest_path, flags, 0);
            if (!fd)
                return fail("restore: cannot reopen " + file.guest_path + ": " + std::strerror(fd.error().sys_errno),
                            fd.error().sys_errno);
            if (file.offset > 0 && ::lseek(fd->get(), file.offset, SEEK_SET) < 0 && !file.directory)
                return fail_errno("restore: seek in " + file.guest_path);
            f->host = std::move(*fd);
            f->guest_path = file.guest_path;
            f->directory = file.directory;
        }
        files.push_back(std::move(f));
    }
    fds_ = FdTable();
    for (const auto& d : s.descriptors) {
        if (d.file >= files.size() || d.fd < 0 || d.fd >= FdTable::kMaxFds)
            return fail("restore: bad descriptor table", EINVAL);
        fds_.install_at(d.fd, files[d.file], d.cloexec);
    }
    return {};
}

int64_t Process::handle(const SyscallArgs& args, UserContext* context) {
    context_ = context;
    waiting_for_ = 0;
    const SyscallInfo* info = syscall_table().find(args.nr);
    int64_t result;
    if (entry_ && !read_ahead_neutral(args)) settle_read_ahead();
    if (entry_) refill_random();
    brk_ = guest_brk();
    auto bump = [](uint64_t& c) { std::atomic_ref<uint64_t>(c).fetch_add(1, std::memory_order_relaxed); };
    if (info && info->handler) {
        bump(counts_[args.nr]);
        result = info->handler(*this, args);
    } else {
        if (args.nr < kMaxSyscall) bump(counts_[args.nr]);
        bump(unsupported_);
        result = -ENOSYS;
    }
    // The entry code answers from the break and the memory map: a call that
    // moved either republishes them (syscall_table.inc's effect column).
    const uint8_t effect = info ? info->effect : uint8_t{kSettles};
    if (effect & kRemaps) refresh_heap_end();
    if (effect & (kRemaps | kMovesBreak)) {
        publish_brk();
        publish_memory_map();
    }
    update_clock();  // after the call: a sleep has moved the host's clocks on
    if (options_.trace) trace_syscall(options_.trace_out, *this, args, result);
    context_ = nullptr;
    if (context && !context->replaced) {  // what `syscall` and sysret leave, for a frame
        context->regs.rax = static_cast<uint64_t>(result);
        context->regs.rcx = context->regs.rip;
        context->regs.r11 = context->regs.rflags;
    }
    if (pending_signals_ || restore_mask_) deliver_signals(context);
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
