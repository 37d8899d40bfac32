// A thin guest's process state and its system-call entry point.
#pragma once

#include <linux/kvm.h>
#include <sys/time.h>

#include <array>
#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abi/thin_guest.h"
#include "memory/address_space.h"
#include "thin/fd_table.h"
#include "thin/guest_entry.h"
#include "thin/sandbox.h"
#include "thin/signal_frame.h"
#include "thin/syscall_table.h"

namespace vessel::thin {

// The first process's pid (and tid): a thin VM's processes are numbered
// from it, as in a pid namespace.
inline constexpr int64_t kGuestPid = 1;

// The limits a guest sees for `resource` (sys_process.cc): {cur, max}.
struct Rlimit {
    uint64_t cur, max;
};
Rlimit guest_rlimit(unsigned resource);

// The kernel's struct sigaction layout on x86-64.
struct kernel_sigaction_t {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

// What the syscall layer needs from the vCPU that runs the guest.
class CpuAccess {
public:
    virtual ~CpuAccess() = default;
    virtual bool set_fs_base(uint64_t base) = 0;
    virtual bool set_gs_base(uint64_t base) = 0;
    virtual uint64_t fs_base() = 0;
    virtual uint64_t gs_base() = 0;
    // The vCPU's x87/SSE/AVX state (KVM_GET_XSAVE's 4 KiB region), saved in
    // signal frames; nullopt where there is none (the tests' stand-ins).
    virtual std::optional<std::vector<uint32_t>> xsave() { return std::nullopt; }
    // False when KVM refuses the region.
    virtual bool set_xsave(const std::vector<uint32_t>& /*region*/) { return false; }
};

// The calling code's user-mode registers at a system call or an exception:
// what a signal frame saves and rt_sigreturn restores.
struct UserContext {
    kvm_regs regs{};  // rip: where the interrupted code resumes
    TrapInfo trap;    // an exception's vector, error code and CR2
    // A signal handler is entered, or rt_sigreturn returned from one: the
    // vCPU takes all of `regs` (otherwise only the call's result).
    bool replaced = false;
};

// Everything about a thin process that lives outside guest memory, as plain
// data: what a snapshot records and a restore rebuilds.
struct ProcessSnapshot {
    struct File {
        enum Kind : uint8_t { kStdio = 0, kPath = 1 };
        Kind kind = kPath;
        int stdio = -1;          // kStdio: which host stream
        std::string guest_path;  // kPath: reopened through the sandbox
        int flags = 0;           // F_GETFL
        int64_t offset = 0;
        bool directory = false;
    };
    struct Descriptor {
        int fd;
        uint32_t file;  // index into files: dup()ed descriptors share one
        bool cloexec;
    };
    std::string cwd = "/";
    uint64_t brk_start = 0, brk = 0;
    uint32_t umask = 022;
    uint64_t clear_child_tid = 0, signal_mask = 0;
    std::array<kernel_sigaction_t, 64> sigactions{};
    std::array<uint64_t, 4> sigaltstack{};
    std::vector<File> files;
    std::vector<Descriptor> descriptors;
    // Section 9 (put_signals): none of it in older snapshots.
    uint64_t pending_signals = 0;
    std::array<int32_t, 64> pending_codes{};  // si_code of each pending signal
    std::optional<uint64_t> restore_mask;     // rt_sigsuspend's or a masked wait's caller's
    itimerval real_timer{};                   // ITIMER_REAL (alarm, setitimer)
};

class Process;
struct UserContext;

// What clone (fork, vfork, clone3) asks for besides the copy (thin/sys_process.cc).
struct CloneRequest {
    uint64_t flags = 0;         // CLONE_* (the exit signal's byte cleared)
    int exit_signal = SIGCHLD;  // sent to the parent when the child ends; 0: none
    uint64_t stack = 0;         // the child's stack pointer; 0: the parent's
    uint64_t parent_tid = 0;    // CLONE_PARENT_SETTID: where the parent finds the child's pid
    uint64_t child_tid = 0;     // CLONE_CHILD_SETTID / CLONE_CHILD_CLEARTID
    uint64_t tls = 0;           // CLONE_SETTLS: the child's FS base
};

// The VM's other processes, as one process reaches them. The machine keeps
// the tree (machine/thin_vm.cc): each process runs on a vCPU of its own, so
// these are called from the calling process's vCPU thread.
class ProcessTree {
public:
    virtual ~ProcessTree() = default;
    // A child of `parent` with a copy of its memory and state (fork_child),
    // running from `regs` (the call's return, RAX 0). Its pid, or -errno
    // (-EAGAIN: too many processes, -ENOMEM: guest memory used up).
    virtual int64_t fork(Process& parent, const UserContext& regs, const CloneRequest& request) = 0;
    // wait4/waitid: a child of `p` that ended and is `target`. Its pid and
    // wait status (`status`, as wait4's); it is reaped unless `keep`. 0
    // with `nohang` when none has ended yet; -ECHILD when there is no such
    // child; -EINTR when a signal came for `p` while it waited.
    struct WaitFor {
        enum Kind { kAny, kPid, kGroup } kind;
        int64_t id;  // the pid, or the process group
    };
    virtual int64_t wait(Process& p, WaitFor target, bool nohang, bool keep, int& status) = 0;
    // The parent's pid (0 for pid 1).
    virtual int64_t parent(const Process& p) = 0;
    // kill(2) from `sender` to the others `pid` names (> 0: one process;
    // 0: sender's group; -1: every process but pid 1; < -1: group -pid).
    // 0, or -ESRCH when it names none (the sender aside).
    virtual int64_t kill(Process& sender, int64_t pid, int sig) = 0;
    // Process groups and sessions, with Linux's rules (setpgid(2),
    // setsid(2)): a process's group or session (pid 0: p's own), -ESRCH.
    virtual int64_t group(Process& p, int64_t pid, bool session) = 0;
    virtual int64_t set_group(Process& p, int64_t pid, int64_t pgid) = 0;
    virtual int64_t new_session(Process& p) = 0;
    // The terminal's foreground process group (tcgetpgrp, tcsetpgrp): the
    // terminal's signals from outside the VM (SIGINT, SIGQUIT, SIGWINCH)
    // go to it. Setting it: a group of p's session, else -EPERM.
    virtual int64_t foreground(Process& p, std::optional<int64_t> set) = 0;
    // Live processes, pid 1 included.
    virtual size_t count() = 0;
    // `p` passed exec's point of no return: it no longer uses the memory it
    // borrowed from a vfork parent, which goes on.
    virtual void execed(Process& p) = 0;
};

struct ProcessOptions {
    bool trace = false;
    bool fsgsbase = false;  // CR4.FSGSBASE is on: the guest may set FS itself
    std::FILE* trace_out = stderr;
    uint32_t uid = 0, gid = 0;
    // What execve gives a new program: AT_HWCAP, AT_HWCAP2, its stack's size.
    uint32_t hwcap = 0, hwcap2 = 0;
    uint64_t stack_size = 8ull << 20;
    // What /proc/self/{cmdline,environ,comm} show: the program's start
    // arguments and environment, and its file name (at most 15 bytes).
    std::vector<std::string> argv, envp;
    std::string comm;
    // The guest's TSC less the host's (what the guest-side clock's `rdtsc`
    // reads against the VMM's): 0 unless KVM could not align them.
    uint64_t tsc_offset = 0;
    // The guest's XCR0 and the size of its XSAVE image (what a signal frame
    // holds): x87 and SSE unless the machine says more.
    uint64_t xcr0 = 3;
    uint32_t xsave_size = 576;
    // Readable when a signal from outside the VM waits for the guest (the
    // machine's self-pipe): pause and rt_sigsuspend wait on it. -1: none.
    int signal_fd = -1;
    // The VM's process tree (none: a lone process, as in the tests), and
    // this process's pid in it.
    ProcessTree* tree = nullptr;
    int64_t pid = kGuestPid;
};

class Process {
public:
    Process(memory::AddressSpace& as, Sandbox sandbox, CpuAccess& cpu, ProcessOptions options);
    // fork(2)'s child: the same files (descriptions shared, as after
    // Linux's fork), working directory, break, signal dispositions, mask and
    // alternate stack; no pending signals, timers or counts. `as` holds the
    // copy of this process's memory (AddressSpace::copy_from); the request's
    // CLONE_CHILD_SETTID and CLONE_CHILD_CLEARTID are applied to it.
    // `signal_fd`: what the child's waits watch (ProcessOptions::signal_fd).
    std::unique_ptr<Process> fork_child(memory::AddressSpace& as, CpuAccess& cpu, int64_t pid, int signal_fd,
                                        const CloneRequest& request) const;
    int64_t pid() const { return options_.pid; }
    // A child that ended: its calls, refusals, I/O and memory shortfalls
    // are added to this process's counters (pid 1's: the VM's metrics and
    // the summary `vessel run` prints). Safe while this process runs.
    void absorb_counts(const Process& ended);
    // setuid and friends: the process's uid and gid (real, effective and
    // saved alike), which the entry code answers getuid and getgid from.
    void set_credentials(uint32_t uid, uint32_t gid);
    ProcessTree* tree() const { return options_.tree; }

    // Executes one system call; returns RAX. With `context` (the caller's
    // registers, rip where the call returns to), signal handlers run: a
    // pending signal's handler is entered, and rt_sigreturn returns from
    // one, both by replacing context->regs. Without it (tests, fuzzing),
    // signals with handlers are dropped and counted.
    int64_t handle(const SyscallArgs& args, UserContext* context = nullptr);
    // An exception the guest's code raised, as Linux's force_sig_fault:
    // its handler is entered (true; `context` replaced), or, when there is
    // none or the signal is blocked or ignored, the process dies of it.
    bool take_fault(int sig, int code, uint64_t addr, UserContext& context);
    // A call the VMM made for the guest was interrupted (-EINTR) by a signal
    // from outside the VM, queued with send_signal. Decides as Linux does:
    // an ignored signal does not interrupt (false: make the call again); a
    // handler runs, after which the call returns -EINTR, or, when every
    // handler due has SA_RESTART, is made again (through the entry code at
    // `restart_va`); a terminating signal ends the process. `context`: the
    // registers of the call (rip its return address).
    // `made` false: the signal came before the call was made (Linux would
    // have delivered it on the way back to user mode): a handler runs, and
    // the call is made after it whatever SA_RESTART says.
    bool interrupt_call(uint64_t nr, UserContext& context, uint64_t restart_va, bool made = true);
    // pause (no mask) and rt_sigsuspend: with `mask` as the signal mask
    // until a signal is delivered (the handler's frame restores the
    // caller's), waits for one the mask lets through; always -EINTR.
    int64_t suspend(std::optional<uint64_t> mask);
    // ppoll, pselect6, epoll_pwait and epoll_pwait2 given a signal mask
    // (Linux's set_user_sigmask): `mask` holds while the call waits. True
    // when a signal it lets through is already pending: the call then only
    // looks, and with nothing ready returns -EINTR so that it is delivered.
    bool begin_masked_wait(uint64_t mask);
    // After such a wait: the caller's mask again, unless the call was
    // interrupted (-EINTR): then the handler's frame restores it (or
    // deliver_signals, when none runs). Returns `result`.
    int64_t end_masked_wait(int64_t result);
    // rt_sigtimedwait: takes the lowest pending signal of `set` (its siginfo
    // to `info`, unless 0) and returns its number; with none, waits up to
    // `timeout` (none: for ever) for a signal from outside the VM: -EAGAIN
    // when the time is up, -EINTR when one came (the machine queues it, and
    // the call is made again if it is blocked: then it is taken here).
    int64_t sigtimedwait(uint64_t set, uint64_t info, std::optional<timespec> timeout);
    // execve and execveat (exec.cc): a new program (static, dynamic or a
    // `#!` script) replaces the image; the caller's context becomes its
    // entry. -errno while nothing changed yet; a failure past the point of
    // no return kills the process with SIGSEGV.
    int64_t exec(int dirfd, uint64_t path, uint64_t argv, uint64_t envp, uint64_t flags);
    // During handle(): the caller's registers (nullptr when there are none).
    const UserContext* context() const { return context_; }
    // Delivers the pending signals at an arbitrary point of the guest's code
    // (a signal from outside arrived while it ran).
    void deliver_pending(UserContext& context) { deliver_signals(&context); }
    // rt_sigreturn: the registers, mask, alternate stack and FPU state from
    // the frame at the caller's stack. A frame that cannot be read kills
    // the process with SIGSEGV, as Linux does.
    int64_t sigreturn();

    bool exited() const { return exited_; }
    int exit_status() const { return exit_status_; }
    // Starts the heap at `start`, with pages mapped ahead of it (the first
    // growth then needs no exit either).
    void set_brk_start(uint64_t start);
    // Where the program image holds the string "/proc/self/exe" (from the
    // rewrite cache; at most kSelfExeStrings, 0: none). While a string is
    // there and read-only, the entry code answers readlink of its address
    // itself (-ENOENT).
    static constexpr size_t kSelfExeStrings = abi::kSelfExeStrings;
    void set_self_exe_strings(const std::array<uint64_t, kSelfExeStrings>& va);
    // Connects guest fds 0-2 to the host's.
    void attach_stdio();
    // Lets the guest's entry code answer calls without an exit (see
    // guest_entry.h); off while tracing, so every call is traced.
    void attach_guest_entry(GuestEntry entry);
    const std::optional<GuestEntry>& guest_entry() const { return entry_; }

    // Read-ahead for small sequential reads of regular files: the VMM reads
    // a window past the caller's buffer into guest memory, and the entry code
    // serves the next reads from it. The host file offset then runs ahead of
    // the guest's by the unread part, which settle_read_ahead() gives back
    // before any call that could see or move an offset or the memory map.
    // The window starts small and doubles each time the guest uses it up; a
    // window the guest never touched (its reads do not come through the
    // entry code, or it seeks) shrinks it back, and after kReadAheadMaxWasted
    // such windows in a row read-ahead stops.
    static constexpr uint64_t kReadAheadWindow = 1ull << 20;  // the buffer, and the largest window
    static constexpr uint64_t kReadAheadFirst = 64 * 1024;
    static constexpr uint64_t kReadAheadMaxRead = 64 * 1024;  // larger reads gain little
    static constexpr unsigned kReadAheadMaxWasted = 3;
    static constexpr const char* kReadAheadName = "[vessel read-ahead]";
    void settle_read_ahead();
    // The clock the entry code answers clock_gettime, gettimeofday and time
    // from: CLOCK_MONOTONIC and CLOCK_REALTIME extrapolated from the TSC.
    // Calibrated over the first kClockCalibrationNs of the run, re-based on
    // the host's clocks at every exit, never stepping MONOTONIC backwards.
    // The VMM's own clock calls answer from it too (nullopt: not calibrated
    // yet, use the host's clocks), so the two sources agree.
    static constexpr uint64_t kClockCalibrationNs = 20'000'000;
    std::optional<uint64_t> clock_ns(bool realtime);
    // After a read of `got` bytes into [buf, buf+count) from `fd`: fills the
    // window when the read looks sequential and small (read(2) calls this).
    void fill_read_ahead(int fd, OpenFile& file, uint64_t buf, uint64_t count, int64_t got);

    // Records the process state. Fails (naming the descriptor) when the guest
    // holds something that cannot be recreated, such as a pipe.
    Result<ProcessSnapshot> capture() const;
    // Rebuilds the state in a fresh process: files are reopened through the
    // sandbox by guest path and repositioned, stdio is the host's.
    Result<> restore(const ProcessSnapshot& snapshot);

    // Counters for metrics: calls per number, and calls answered -ENOSYS.
    // Updated with relaxed atomics so another thread may read them.
    // Calls of number `nr`, those the guest-side entry answered included.
    uint64_t calls(unsigned nr) const;
    // Includes the calls the guest-side entry code answered -ENOSYS itself.
    uint64_t unsupported_calls() const;
    // Mappings and heap growth refused because guest memory (--mem) was
    // used up: the likely cause of a failure, which `vessel run` names.
    void note_out_of_memory() { std::atomic_ref<uint64_t>(out_of_memory_).fetch_add(1, std::memory_order_relaxed); }
    // clone and clone3 asked for a thread (CLONE_VM without CLONE_VFORK):
    // refused with ENOSYS, and named in unsupported_summary().
    void note_refused_thread() { std::atomic_ref<uint64_t>(refused_threads_).fetch_add(1, std::memory_order_relaxed); }
    uint64_t out_of_memory() const {
        return std::atomic_ref<const uint64_t>(out_of_memory_).load(std::memory_order_relaxed);
    }
    // The calls answered with ENOSYS because the table has no handler for
    // them, most frequent first: "io_uring_setup x2, clone3 x1", and
    // "N more with unknown numbers" for numbers past the table; empty when
    // there were none. Refusals C libraries expect (rseq) are left out.
    // vessel prints it when a program fails.
    std::string unsupported_summary() const;
    uint64_t io_read_bytes() const { return std::atomic_ref<const uint64_t>(io_read_).load(std::memory_order_relaxed); }
    uint64_t io_write_bytes() const {
        return std::atomic_ref<const uint64_t>(io_write_).load(std::memory_order_relaxed);
    }
    // Bytes moved between guest memory and files by read/write-style calls.
    void count_io(bool to_guest, int64_t bytes) {
        if (bytes > 0)
            std::atomic_ref<uint64_t>(to_guest ? io_read_ : io_write_)
                .fetch_add(static_cast<uint64_t>(bytes), std::memory_order_relaxed);
    }

    // State the families share.
    memory::AddressSpace& as() { return *as_; }
    memory::GuestVirtual mem() const { return as_->view(); }
    Sandbox& sandbox() { return *sandbox_; }
    FdTable& fds() { return fds_; }
    CpuAccess& cpu() { return *cpu_; }
    const ProcessOptions& options() const { return options_; }
    std::string& cwd() { return cwd_; }
    // chdir(path) as the guest would make it (an absolute guest path);
    // 0 or -errno.
    int64_t set_working_directory(const std::string& path);
    uint64_t& brk() { return brk_; }
    uint64_t brk_start() const { return brk_start_; }
    // The end of the heap pages mapped (page-aligned, at or above the
    // break): sys_brk maps ahead of the break, and the entry code grows the
    // break into those pages without an exit.
    uint64_t& heap_end() { return heap_end_; }
    unsigned& umask() { return umask_; }
    // set_tid_address's pointer; the guest-side entry may have taken it.
    uint64_t clear_child_tid() const;
    void set_clear_child_tid(uint64_t address);
    uint64_t& signal_mask() { return signal_mask_; }
    std::array<kernel_sigaction_t, 64>& sigactions() { return sigactions_; }
    std::array<uint64_t, 4>& sigaltstack() { return sigaltstack_; }
    // Is `sp` on the enabled alternate signal stack (Linux's on_sig_stack)?
    bool on_sigaltstack(uint64_t sp) const {
        const uint64_t base = sigaltstack_[0], size = sigaltstack_[2];
        return !(sigaltstack_[1] & SS_DISABLE) && size && sp > base && sp - base <= size;
    }
    // The name prctl(PR_SET_NAME) sets and /proc/self/comm shows.
    std::string& comm() { return options_.comm; }
    // What /proc/self/{cmdline,environ,comm} show (a restore's, once an
    // execve made them differ from the VM's command line).
    void set_program_view(std::vector<std::string> argv, std::vector<std::string> envp, std::string comm) {
        options_.argv = std::move(argv);
        options_.envp = std::move(envp);
        options_.comm = std::move(comm);
    }
    // What prctl sets that only prctl reads back (no effect on this guest).
    struct PrctlState {
        int pdeathsig = 0;
        bool dumpable = true, keepcaps = false, no_new_privs = false, child_subreaper = false, thp_disable = false;
        uint64_t timerslack_ns = 50000;
        int nice = 0;    // setpriority's value: read back, not applied to the host
        int ioprio = 0;  // ioprio_set's, likewise (0: none set, as Linux reads it)
    };
    PrctlState& prctl_state() { return prctl_state_; }
    void exit(int status) {
        exited_ = true;
        exit_status_ = status & 0xff;
    }
    // Signals sent to the guest's own process (kill, tkill, tgkill). They
    // wait while blocked; at the end of every call an unblocked one takes
    // its action: a handler is entered (handle() with a context), SIG_IGN
    // and default-ignore discard it, default-terminate ends the process as
    // killed by it (exit status 128 + signal). Not kept in snapshots.
    // `code`: siginfo's si_code (SI_USER from kill, SI_TKILL from tkill/tgkill).
    void send_signal(int sig, int code = SI_USER) {
        pending_signals_ |= 1ull << (sig - 1);
        pending_code_[sig - 1] = code;
        sync_signalfds();
    }
    // signalfd: `file` (a new one, its `signalfd` set) now reads signals.
    void add_signalfd(const std::shared_ptr<OpenFile>& file);
    // Keeps each signalfd's eventfd readable exactly while a signal of its
    // set is pending; called wherever the pending set changes.
    void sync_signalfds();
    // read() of a signalfd: takes pending signals of its set, lowest first,
    // as many signalfd_siginfo records as `count` holds; waits for one
    // (or a handler's EINTR) unless the descriptor is non-blocking.
    int64_t read_signalfd(OpenFile& file, uint64_t buf, uint64_t count);
    uint64_t pending_signals() const { return pending_signals_; }
    // The signal that ended the process, else 0.
    int killed_by() const { return killed_by_; }

    // Resolves a guest path argument (at `ptr`, relative to `dirfd`) to an
    // absolute guest path; returns -errno (EFAULT, ENAMETOOLONG, ENOENT, EBADF, ENOTDIR).
    int64_t read_path(int dirfd, uint64_t ptr, std::string& out, bool allow_empty = false);

private:
    Process(memory::AddressSpace& as, std::shared_ptr<Sandbox> sandbox, CpuAccess& cpu, ProcessOptions options);
    // Waits on the machine's self-pipe until a signal from outside arrives
    // (true; also when the wait is interrupted) or `timeout` passes (false).
    bool wait_for_outside_signal(std::optional<timespec> timeout);
    // True for calls that cannot observe a window: they neither use a file
    // offset, nor write a regular file, nor change the memory map (the
    // kWindowSafe* effect bits of syscall_table.inc).
    bool read_ahead_neutral(const SyscallArgs& args);
    // Tells the entry code the break and the heap's mapped end: it answers
    // brk queries, and growth up to that end, without an exit.
    void publish_brk();
    // The break, with the entry code's growth taken in when it is within
    // the heap mapped (anything else is the guest's scribble, ignored).
    uint64_t guest_brk() const;
    // Recomputes heap_end_ after the memory map changed: the run of
    // writable "[heap]" pages from the break up (the guest may have
    // unmapped or replaced some of those mapped ahead).
    void refresh_heap_end();
    // Is `va` the start of a window buffer this process mapped (the guest
    // may have unmapped or replaced it since)?
    bool is_window(uint64_t va) const;
    // Refills the entry code's random pool once the guest has used some.
    void refill_random();
    // Tells the entry code, after the memory map changed, where the stack
    // and the program's data are (the ranges it may store results into) and
    // which "/proc/self/exe" strings are still there and read-only.
    void publish_memory_map();
    // Takes the action of every pending signal the mask lets through; with
    // `context`, handlers are entered (one frame on another, as Linux does).
    void deliver_signals(UserContext* context);
    // Pushes a frame for `sig` and points `context` at its handler. False
    // when the frame cannot be written: the process then dies of SIGSEGV.
    bool enter_handler(int sig, const SigInfo& info, UserContext& context);
    // The mask rt_sigsuspend or a masked wait kept aside, back in place.
    void give_back_mask();
    // The siginfo of pending signal `sig`: its code, and the sender (the one
    // process; none for the kernel's, such as the timer's SIGALRM).
    SigInfo pending_info(int sig) const {
        const int code = pending_code_[sig - 1];
        return {sig, code, 0, code == SI_KERNEL ? 0 : static_cast<int32_t>(kGuestPid), options_.uid, false};
    }
    // The FPU state a handler starts with (Linux's fpu__clear_user_states).
    void reset_fpu();
    void die_of(int sig) {
        exited_ = true;
        killed_by_ = sig;
        exit_status_ = 128 + sig;
    }

    memory::AddressSpace* as_;
    std::shared_ptr<Sandbox> sandbox_;  // one for the VM's processes
    CpuAccess* cpu_;
    ProcessOptions options_;
    FdTable fds_;
    std::string cwd_ = "/";
    uint64_t brk_start_ = 0, brk_ = 0, heap_end_ = 0;
    std::array<uint64_t, kSelfExeStrings> self_exe_strings_{};
    unsigned umask_ = 022;
    uint64_t clear_child_tid_ = 0;
    uint64_t signal_mask_ = 0;
    std::array<kernel_sigaction_t, 64> sigactions_{};
    std::array<uint64_t, 4> sigaltstack_{0, 2 /* SS_DISABLE */, 0, 0};
    PrctlState prctl_state_;
    uint64_t pending_signals_ = 0;
    std::array<int, 64> pending_code_{};
    // The set rt_sigtimedwait waits for, until the next call: a signal from
    // outside in it is the call's to take, blocked or not (interrupt_call).
    uint64_t waiting_for_ = 0;
    std::vector<std::weak_ptr<OpenFile>> signalfds_;
    // rt_sigsuspend's caller's mask: what the next handler's frame restores,
    // or the mask again when the call returns without one.
    std::optional<uint64_t> restore_mask_;
    UserContext* context_ = nullptr;  // during handle()
    int killed_by_ = 0;
    std::array<uint64_t, 64> undelivered_{};  // per signal: dropped for want of handler support
    bool exited_ = false;
    int exit_status_ = 0;
    std::array<uint64_t, kMaxSyscall> counts_{};
    uint64_t unsupported_ = 0;
    uint64_t out_of_memory_ = 0;
    uint64_t refused_threads_ = 0;
    uint64_t io_read_ = 0, io_write_ = 0;
    std::optional<GuestEntry> entry_;
    uint64_t window_va_ = 0;  // the read-ahead buffer, mapped on first use
    uint64_t window_size_ = kReadAheadFirst;
    struct Clock {
        bool started = false, valid = false;
        uint64_t first_tsc = 0, first_mono = 0;          // calibration start
        uint64_t tsc = 0, mult = 0, mono = 0, real = 0;  // the formula's base, as published
    } clock_;
    void update_clock();
    unsigned windows_wasted_ = 0;
};

// The pid of the process that last armed the VM's ITIMER_REAL (alarm,
// setitimer; sys_time.cc): the timer's SIGALRM is its.
int64_t timer_owner();

// Writes the strace-style line for one call.
void trace_syscall(std::FILE* out, Process& p, const SyscallArgs& args, int64_t result);

// Maps heap pages from p.heap_end() up to `top`, and more past it where the
// room is free (sys_memory.cc); false when `top` cannot be reached: another
// mapping in the way (as Linux refuses), or guest memory exhausted.
bool grow_heap(Process& p, uint64_t top);

}  // namespace vessel::thin
