#include "cpu/vcpu_set.h"

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <system_error>

namespace vessel::cpu {

const char* to_string(RunState s) {
    switch (s) {
        case RunState::kCreated: return "created";
        case RunState::kRunning: return "running";
        case RunState::kPaused: return "paused";
        case RunState::kExited: return "exited";
    }
    return "unknown";
}

namespace {

uint64_t thread_cpu_ns(pthread_t thread) {
    clockid_t cid;
    timespec ts;
    if (pthread_getcpuclockid(thread, &cid) != 0 || clock_gettime(cid, &ts) != 0) return 0;
    return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

VcpuSet::~VcpuSet() {
    if (std::none_of(cpus_.begin(), cpus_.end(), [](const auto& c) { return c->thread.joinable(); })) return;
    stop();
    join();
}

VcpuRunner& VcpuSet::add(kvm::Vcpu& vcpu, ExitHandler& handler) {
    std::lock_guard g(mu_);
    cpus_.push_back(std::make_unique<Cpu>(vcpu, handler));
    return cpus_.back()->runner;
}

size_t VcpuSet::add_running(kvm::Vcpu& vcpu, ExitHandler& handler) {
    std::lock_guard g(mu_);
    cpus_.push_back(std::make_unique<Cpu>(vcpu, handler));
    cpus_.back()->ended = true;  // not looping until launched
    return cpus_.size() - 1;
}

VcpuSet::Cpu& VcpuSet::cpu(size_t i) {
    std::lock_guard g(mu_);
    return *cpus_.at(i);
}

Result<> VcpuSet::launch(size_t i, ExitHandler& handler, std::function<void(size_t, const Result<End>&)> done) {
    Cpu* c = &cpu(i);
    if (c->thread.joinable()) c->thread.join();  // its loop has ended: only the thread's own end is left
    {
        std::lock_guard g(mu_);
        c->handler = &handler;
        c->ended = false;
    }
    return start_thread(i, std::move(done));
}

Result<> VcpuSet::start_thread(size_t i, std::function<void(size_t, const Result<End>&)> done) {
    Cpu* c = &cpu(i);
    try {
        c->thread = std::thread([this, i, c, done] {
            char name[16];
            std::snprintf(name, sizeof name, "vcpu%zu", i);
            pthread_setname_np(pthread_self(), name);
            Result<End> r = End::kStopped;
            if (auto started = thread_start_ ? thread_start_() : Result<>(); !started) {
                std::lock_guard g(mu_);
                c->ended = true;
                changed_.notify_all();
                r = std::unexpected(started.error());
            } else {
                r = loop(*c);
            }
            if (done) done(i, r);
        });
    } catch (const std::system_error& e) {  // no thread: a pids limit, or memory
        std::lock_guard g(mu_);
        c->ended = true;
        changed_.notify_all();
        return fail(std::string("a vCPU thread: ") + e.what(), EAGAIN);
    }
    return {};
}

void VcpuSet::start() {
    VcpuRunner::install_kick_signal();
    std::lock_guard g(mu_);
    state_ = RunState::kRunning;
    changed_.notify_all();
}

void VcpuSet::finish() {
    std::lock_guard g(mu_);
    state_ = RunState::kExited;
    changed_.notify_all();
}

Result<VcpuSet::End> VcpuSet::run_here(size_t i) {
    Cpu* c = &cpu(i);
    return loop(*c);
}

void VcpuSet::spawn(std::function<void(size_t, const Result<End>&)> done) {
    for (size_t i = 0; i < size(); ++i)
        if (auto r = start_thread(i, done); !r && done) done(i, std::unexpected(r.error()));
}

void VcpuSet::join() {
    for (size_t i = 0; i < size(); ++i) {
        Cpu* c = &cpu(i);
        if (!c->thread.joinable()) continue;
        while (true) {
            {
                std::lock_guard g(mu_);
                if (c->ended) break;
                if (c->looping) c->runner.kick();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        c->thread.join();
    }
}

Result<VcpuSet::End> VcpuSet::loop(Cpu& c) {
    VcpuRunner& r = c.runner;
    kvm_run& rs = r.run_state();
    bool park_first;
    {
        std::lock_guard g(mu_);
        r.bind_thread();
        c.looping = true;
        c.ended = false;
        park_first = pause_requested_ || stopping_;  // a vCPU launched during a pause
    }
    Result<End> end = End::kStopped;
    while (!park_first || park(c)) {
        park_first = false;
        if (auto e = r.enter(); !e) {
            end = std::unexpected(e.error());
            break;
        }
        if (rs.exit_reason == KVM_EXIT_INTR) rs.immediate_exit = 0;
        if (c.handler->on_exit(rs) == Action::kStop) {
            end = End::kHandler;
            break;
        }
        if (stopping_) break;
        if (!pause_requested_) continue;
        // KVM completes a port I/O or MMIO exit (the register write of an
        // IN, the step past an OUT on VT-x/AMD-V) only at the next KVM_RUN:
        // re-enter with immediate_exit so the paused state is complete. A
        // snapshot taken now must neither replay the access nor skip it.
        if (rs.exit_reason != KVM_EXIT_INTR) {
            rs.immediate_exit = 1;
            continue;
        }
        if (!park(c)) break;
    }
    std::lock_guard g(mu_);
    r.unbind_thread();
    c.looping = false;
    c.ended = true;
    changed_.notify_all();
    return end;
}

bool VcpuSet::park(Cpu& c) {
    VcpuRunner& r = c.runner;
    (void)r.flush_regs();
    std::unique_lock g(mu_);
    ++parked_;
    changed_.notify_all();
    changed_.wait(g, [&] { return !pause_requested_ || stopping_; });
    --parked_;
    changed_.notify_all();
    if (stopping_) return false;
    g.unlock();
    r.run_state().immediate_exit = 0;
    (void)r.reload_regs();  // a restore may have replaced them
    return true;
}

Result<> VcpuSet::pause(std::chrono::milliseconds timeout) {
    std::unique_lock g(mu_);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    // A machine serves its control API before its vCPUs start: a pause from
    // then waits for them rather than failing on a VM about to run.
    changed_.wait_until(g, deadline, [&] { return state_ != RunState::kCreated || stopping_; });
    if (stopping_) return fail("VM is stopping", EBUSY);
    if (state_ != RunState::kRunning) return fail(std::string("VM is ") + to_string(state_), EBUSY);
    auto withdraw = [&] {
        pause_requested_ = false;
        changed_.notify_all();
    };
    pause_requested_ = true;
    // Kick until every vCPU has parked: a kick can land just before a vCPU
    // blocks in a host call, so one is not always enough.
    // Ended vCPUs (a thin VM's processes that exited) are not waited for;
    // the first one's (pid 1's, a full machine's boot vCPU) ends the VM.
    while (true) {
        if (stopping_) {
            withdraw();
            return fail("VM is stopping", EBUSY);
        }
        if (cpus_.front()->ended) {  // checked first: the others may all have parked
            withdraw();
            return fail("VM is exited", EBUSY);
        }
        if (parked_ >= looping_locked()) break;
        if (std::chrono::steady_clock::now() > deadline) {
            withdraw();
            const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout).count();
            return fail(std::string(looping_locked() == 1 ? "the vCPU" : "the vCPUs") + " did not stop within " +
                            std::to_string(secs) + " s",
                        ETIMEDOUT);
        }
        kick_looping();
        changed_.wait_for(g, std::chrono::milliseconds(20));
    }
    state_ = RunState::kPaused;
    return {};
}

Result<> VcpuSet::resume() {
    std::unique_lock g(mu_);
    if (state_ != RunState::kPaused) return fail(std::string("VM is ") + to_string(state_), EBUSY);
    pause_requested_ = false;
    changed_.notify_all();
    changed_.wait_for(g, std::chrono::seconds(5), [&] { return parked_ == 0; });
    state_ = RunState::kRunning;
    return {};
}

void VcpuSet::stop() {
    std::lock_guard g(mu_);
    stopping_ = true;
    changed_.notify_all();
    kick_looping();
}

RunState VcpuSet::state() const {
    std::lock_guard g(mu_);
    return state_;
}

void VcpuSet::kick_all() {
    std::lock_guard g(mu_);
    kick_looping();
}

size_t VcpuSet::looping_locked() const {
    return static_cast<size_t>(std::count_if(cpus_.begin(), cpus_.end(), [](const auto& c) { return c->looping; }));
}

void VcpuSet::kick_looping() {
    for (auto& c : cpus_)
        if (c->looping) c->runner.kick();
}

uint64_t VcpuSet::cpu_time_ns() const {
    // Under the lock a looping vCPU's thread cannot end (its loop takes the
    // lock to say so), so its clock stays valid while read.
    std::lock_guard g(mu_);
    uint64_t total = 0;
    for (const auto& c : cpus_)
        if (c->looping) total += thread_cpu_ns(c->runner.thread());
    return total;
}

}  // namespace vessel::cpu
