// Signal delivery in a thin process: default actions, handler frames
// (signal_frame.h) and rt_sigreturn. Signals come from the guest itself
// (kill, tkill, tgkill, abort) and from its faults.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "thin/process.h"

namespace vessel::thin {
namespace {

enum class DefaultAction { kTerminate, kIgnore, kStop };

// signal(7)'s table; "core" is termination here (no core files).
DefaultAction default_action(int sig) {
    switch (sig) {
        case SIGCHLD:
        case SIGCONT:
        case SIGURG:
        case SIGWINCH: return DefaultAction::kIgnore;
        case SIGSTOP:
        case SIGTSTP:
        case SIGTTIN:
        case SIGTTOU: return DefaultAction::kStop;
        default: return DefaultAction::kTerminate;
    }
}

constexpr uint64_t bit(int sig) { return 1ull << (sig - 1); }
static_assert(kUnblockable == (bit(SIGKILL) | bit(SIGSTOP)));
constexpr uint64_t kSigDfl = 0, kSigIgn = 1;
constexpr uint64_t kSaRestorer = 0x04000000;  // SA_RESTORER: x86-64 handlers return through it
constexpr uint64_t kFlagsClearedForHandler = 0x400 /* DF */ | 0x10000 /* RF */ | 0x100 /* TF */;

}  // namespace

void Process::deliver_signals(UserContext* context) {
    for (;;) {
        const uint64_t ready = pending_signals_ & (~signal_mask_ | kUnblockable);
        if (!ready || exited_) break;
        const int sig = __builtin_ctzll(ready) + 1;
        pending_signals_ &= ~bit(sig);
        const uint64_t handler = sig == SIGKILL || sig == SIGSTOP ? kSigDfl : sigactions_[sig - 1].handler;
        if (handler == kSigIgn) continue;
        if (handler != kSigDfl) {
            if (!context) {  // nowhere to run it (tests, fuzzing)
                std::atomic_ref<uint64_t>(undelivered_[sig - 1]).fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            enter_handler(sig, pending_info(sig), *context);
            continue;
        }
        const DefaultAction action = default_action(sig);
        if (action == DefaultAction::kStop)  // nobody could continue the one process: not stopped, but said
            std::atomic_ref<uint64_t>(undelivered_[sig - 1]).fetch_add(1, std::memory_order_relaxed);
        if (action == DefaultAction::kTerminate) die_of(sig);
    }
    sync_signalfds();
    // rt_sigsuspend (or a masked wait) returning without a handler: the
    // caller's mask again.
    give_back_mask();
}

bool Process::enter_handler(int sig, const SigInfo& info, UserContext& ctx) {
    kernel_sigaction_t& act = sigactions_[sig - 1];
    const kernel_sigaction_t taken = act;
    // x86-64 handlers return through sa_restorer; Linux refuses a frame
    // without one and the process dies of SIGSEGV.
    if (!(taken.flags & kSaRestorer)) {
        die_of(SIGSEGV);
        return false;
    }
    // The stack: below the red zone, or the top of the alternate stack for
    // SA_ONSTACK unless already on it (then below it, as any frame).
    const uint64_t sp_now = ctx.regs.rsp;
    const uint64_t ss_sp = sigaltstack_[0], ss_flags = sigaltstack_[1], ss_size = sigaltstack_[2];
    const bool alt_enabled = !(ss_flags & SS_DISABLE) && ss_size;
    const bool on_alt = on_sigaltstack(sp_now);
    uint64_t sp = sp_now - kRedZone;
    if ((taken.flags & SA_ONSTACK) && alt_enabled && !on_alt) sp = ss_sp + ss_size;
    const uint64_t uc_stack[3] = {ss_sp,
                                  (!alt_enabled ? SS_DISABLE
                                   : on_alt     ? SS_ONSTACK
                                                : 0) |
                                      (ss_flags & kSsAutoDisarm),
                                  ss_size};

    uint64_t fpstate = 0;
    std::vector<uint8_t> fp;
    if (auto region = cpu_->xsave()) {
        fp = encode_fpstate(*region, options_.xsave_size, options_.xcr0);
        sp = (sp - fp.size()) & ~uint64_t{63};
        fpstate = sp;
    }
    sp = ((sp - kSigFrameSize) & ~uint64_t{15}) - 8;  // (rsp + 8) % 16 == 0, as after a call
    // The mask the handler's return restores: rt_sigsuspend's caller's.
    const uint64_t frame_mask = restore_mask_.value_or(signal_mask_);
    const std::vector<uint8_t> frame =
        encode_sigframe(ctx.regs, ctx.trap, taken.restorer, frame_mask, uc_stack, fpstate, info);
    if (!mem().write(sp, frame.data(), frame.size()) || (fpstate && !mem().write(fpstate, fp.data(), fp.size()))) {
        die_of(SIGSEGV);  // Linux's force_sigsegv: no stack for the frame
        return false;
    }

    ctx.regs.rsp = sp;
    ctx.regs.rip = taken.handler;
    ctx.regs.rdi = static_cast<uint64_t>(sig);
    ctx.regs.rsi = sp + kSiginfoOffset;
    ctx.regs.rdx = sp + kUcontextOffset;
    ctx.regs.rax = 0;
    ctx.regs.rflags &= ~kFlagsClearedForHandler;
    ctx.trap = {};
    ctx.replaced = true;
    if (fpstate) reset_fpu();
    restore_mask_.reset();
    signal_mask_ |= taken.mask;
    if (!(taken.flags & SA_NODEFER)) signal_mask_ |= bit(sig);
    signal_mask_ &= ~kUnblockable;
    if (taken.flags & SA_RESETHAND) act = {kSigDfl, taken.flags & ~uint64_t{SA_SIGINFO}, taken.restorer, taken.mask};
    if (ss_flags & kSsAutoDisarm) sigaltstack_ = {0, SS_DISABLE, 0, 0};
    return true;
}

void Process::reset_fpu() {
    auto region = cpu_->xsave();
    if (!region) return;
    std::vector<uint32_t> init(region->size(), 0);
    init[0] = 0x037f;             // FCW: all exceptions masked, 64-bit precision
    init[6] = 0x1f80;             // MXCSR: all exceptions masked
    init[7] = (*region)[7];       // MXCSR_MASK (read only)
    (void)cpu_->set_xsave(init);  // header zero: every component at its initial state
}

bool Process::take_fault(int sig, int code, uint64_t addr, UserContext& ctx) {
    const uint64_t handler = sigactions_[sig - 1].handler;
    if (handler != kSigDfl && handler != kSigIgn && !(signal_mask_ & bit(sig)))
        return enter_handler(sig, SigInfo{sig, code, addr, 0, 0, true}, ctx);
    // Blocked or ignored: the kernel forces the default action, which for
    // every fault signal ends the process.
    die_of(sig);
    return false;
}

bool Process::interrupt_call(uint64_t nr, UserContext& ctx, uint64_t restart_va, bool made) {
    // Calls Linux never restarts after a handler, SA_RESTART or not.
    const bool never_restarted = nr == SYS_pause || nr == SYS_rt_sigsuspend || nr == SYS_nanosleep ||
                                 nr == SYS_clock_nanosleep || nr == SYS_poll || nr == SYS_ppoll || nr == SYS_select ||
                                 nr == SYS_pselect6 || nr == SYS_epoll_wait || nr == SYS_epoll_pwait ||
                                 nr == SYS_epoll_pwait2 || nr == SYS_rt_sigtimedwait;
    bool restart = !made || !never_restarted;
    // What rt_sigtimedwait waits for is its own to take, as Linux lets the
    // wait dequeue it even when it is not blocked: the call is made again
    // and takes it (its handler does not run).
    const uint64_t for_the_call = made && nr == SYS_rt_sigtimedwait ? waiting_for_ & pending_signals_ : 0;
    bool acts = false;
    for (uint64_t ready = pending_signals_ & (~signal_mask_ | kUnblockable) & ~for_the_call; ready;
         ready &= ready - 1) {
        const int sig = __builtin_ctzll(ready) + 1;
        const kernel_sigaction_t& act = sigactions_[sig - 1];
        const uint64_t handler = sig == SIGKILL || sig == SIGSTOP ? kSigDfl : act.handler;
        if (handler == kSigIgn || (handler == kSigDfl && default_action(sig) != DefaultAction::kTerminate)) continue;
        acts = true;
        if (handler != kSigDfl && !(act.flags & SA_RESTART) && made) restart = false;
    }
    if (!acts) {
        pending_signals_ &= ~for_the_call;
        deliver_signals(nullptr);  // only ignored ones: dropped
        pending_signals_ |= for_the_call;
        return false;
    }
    ctx.regs.rcx = ctx.regs.rip;  // what `syscall` leaves, and where the entry code returns to
    if (restart) {
        ctx.regs.rax = nr;  // the call again, arguments as they were
        ctx.regs.rip = restart_va;
    } else {
        ctx.regs.rax = static_cast<uint64_t>(-EINTR);
        ctx.regs.r11 = ctx.regs.rflags;
    }
    deliver_signals(&ctx);
    return true;
}

int64_t Process::suspend(std::optional<uint64_t> mask) {
    if (mask) (void)begin_masked_wait(*mask);
    // A signal the mask now lets through is delivered as the call returns.
    if (pending_signals_ & (~signal_mask_ | kUnblockable)) return -EINTR;
    // Otherwise one from outside: the machine's self-pipe turns readable
    // (or the vCPU's kick interrupts the wait).
    (void)wait_for_outside_signal(std::nullopt);
    return -EINTR;
}

bool Process::begin_masked_wait(uint64_t mask) {
    if (!restore_mask_) restore_mask_ = signal_mask_;  // made again after a pause of the VM: keep the first
    signal_mask_ = mask & ~kUnblockable;
    return (pending_signals_ & ~signal_mask_) != 0;
}

int64_t Process::end_masked_wait(int64_t result) {
    if (result != -EINTR) give_back_mask();
    return result;
}

void Process::give_back_mask() {
    if (!restore_mask_) return;
    signal_mask_ = *restore_mask_;
    restore_mask_.reset();
}

bool Process::wait_for_outside_signal(std::optional<timespec> timeout) {
    if (options_.signal_fd < 0) return false;  // no such signals here (tests)
    pollfd pfd{options_.signal_fd, POLLIN, 0};
    if (::ppoll(&pfd, 1, timeout ? &*timeout : nullptr, nullptr) == 0) return false;
    char drain[64];
    while (::read(options_.signal_fd, drain, sizeof drain) > 0) {
    }
    return true;  // or interrupted (the vCPU's kick, a host signal): the caller's EINTR either way
}

int64_t Process::sigtimedwait(uint64_t set, uint64_t info, std::optional<timespec> timeout) {
    set &= ~kUnblockable;  // SIGKILL and SIGSTOP are never waited for
    if (const uint64_t ready = pending_signals_ & set) {
        const int sig = __builtin_ctzll(ready) + 1;
        pending_signals_ &= ~bit(sig);
        sync_signalfds();
        if (info) {  // taken even when it cannot be stored, as Linux's
            const auto bytes = encode_siginfo(pending_info(sig));
            if (!mem().write(info, bytes.data(), bytes.size())) return -EFAULT;
        }
        return sig;
    }
    if (timeout && timeout->tv_sec == 0 && timeout->tv_nsec == 0) return -EAGAIN;
    waiting_for_ = set;
    if (!wait_for_outside_signal(timeout)) return -EAGAIN;
    return -EINTR;
}

void Process::add_signalfd(const std::shared_ptr<OpenFile>& file) {
    signalfds_.push_back(file);
    sync_signalfds();
}

void Process::sync_signalfds() {
    std::erase_if(signalfds_, [](const std::weak_ptr<OpenFile>& w) { return w.expired(); });
    for (const auto& weak : signalfds_) {
        const auto f = weak.lock();
        if (!f || !f->signalfd) continue;
        const bool ready = pending_signals_ & f->signalfd->mask;
        if (ready == f->signalfd->raised) continue;
        // The counter is 0 or 1, so neither call can block.
        uint64_t value = 1;
        if (ready)
            (void)!::write(f->host.get(), &value, sizeof value);
        else
            (void)!::read(f->host.get(), &value, sizeof value);
        f->signalfd->raised = ready;
    }
}

int64_t Process::read_signalfd(OpenFile& file, uint64_t buf, uint64_t count) {
    constexpr uint64_t kRecord = sizeof(signalfd_siginfo);
    if (count < kRecord) return -EINVAL;
    uint64_t done = 0;
    for (; done + kRecord <= count; done += kRecord) {
        const uint64_t ready = pending_signals_ & file.signalfd->mask;
        if (!ready) break;
        const int sig = __builtin_ctzll(ready) + 1;
        const SigInfo info = pending_info(sig);
        signalfd_siginfo si{};
        si.ssi_signo = static_cast<uint32_t>(sig);
        si.ssi_code = info.code;
        si.ssi_pid = static_cast<uint32_t>(info.pid);
        si.ssi_uid = info.uid;
        if (!mem().write(buf + done, &si, sizeof si)) break;  // stays pending
        pending_signals_ &= ~bit(sig);
    }
    sync_signalfds();
    if (done) return static_cast<int64_t>(done);
    if (!mem().for_each_chunk(buf, kRecord, true, [](uint8_t*, uint64_t) {})) return -EFAULT;
    const int flags = ::fcntl(file.host.get(), F_GETFL);
    if (flags < 0 || (flags & O_NONBLOCK)) return -EAGAIN;
    // The signal comes from outside (no other thread here): the VMM queues
    // it and, where no handler runs, makes this call again, which takes it.
    if (!wait_for_outside_signal(std::nullopt)) return -EAGAIN;
    return -EINTR;
}

int64_t Process::sigreturn() {
    if (!context_) return -ENOSYS;  // no registers to give back (tests, fuzzing)
    UserContext& ctx = *context_;
    const uint64_t frame_va = ctx.regs.rsp - 8;  // the handler's `ret` took pretcode
    std::array<uint8_t, kSigFrameSize> frame;
    if (!mem().read(frame_va, frame.data(), frame.size())) {
        die_of(SIGSEGV);
        return 0;
    }
    const SavedContext saved = decode_sigframe(frame, ctx.regs);
    if (auto region = cpu_->xsave()) {
        if (saved.fpstate) {
            std::vector<uint8_t> image(options_.xsave_size + 4);
            if (!mem().read(saved.fpstate, image.data(), image.size()) ||
                !cpu_->set_xsave(decode_fpstate(image, *region, options_.xsave_size, options_.xcr0))) {
                die_of(SIGSEGV);
                return 0;
            }
        } else {
            reset_fpu();
        }
    }
    // The alternate stack as uc_stack says, unless the caller is on it
    // (Linux's restore_altstack, whose EPERM and EINVAL are ignored).
    const bool on_alt = on_sigaltstack(ctx.regs.rsp);
    const uint64_t flags = saved.altstack[1] & 0xffffffff;
    if (!on_alt && !(flags & ~uint64_t{SS_DISABLE | kSsAutoDisarm | SS_ONSTACK})) {
        if (flags & SS_DISABLE)
            sigaltstack_ = {0, SS_DISABLE, 0, 0};
        else if (saved.altstack[2] >= kMinSigStackSize)
            sigaltstack_ = {saved.altstack[0], flags & kSsAutoDisarm, saved.altstack[2], 0};
    }
    signal_mask_ = saved.mask & ~kUnblockable;
    ctx.regs = saved.regs;
    ctx.replaced = true;
    return static_cast<int64_t>(saved.regs.rax);
}

}  // namespace vessel::thin
