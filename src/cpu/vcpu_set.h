// A machine's vCPUs, their threads, and the one protocol that pauses them.
//
// Each vCPU runs VcpuRunner's loop (on the caller's thread or on its own);
// the machine supplies only an ExitHandler. Control calls come from any
// thread:
//
//   pause()   asks every vCPU to park and kicks them until all have: a vCPU
//             that is in a host call (a thin guest's system call, a device
//             handler) parks when that exit is done. Before parking, a vCPU
//             lets KVM finish the exit it is in (an `out`'s step past the
//             instruction happens only at the next KVM_RUN), so what a
//             snapshot reads while paused is complete and resumes exactly.
//   resume()  lets them go.
//   stop()    ends every loop: parked vCPUs wake, running ones are kicked.
//
// While parked, the registers KVM holds are exact (sync-regs changes are
// written first) and they are read back on resume: a snapshot reads them,
// a restore may replace them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/result.h"
#include "cpu/vcpu_runner.h"

namespace vessel::cpu {

enum class RunState { kCreated, kRunning, kPaused, kExited };
const char* to_string(RunState s);

class VcpuSet {
public:
    VcpuSet() = default;
    VcpuSet(const VcpuSet&) = delete;
    VcpuSet& operator=(const VcpuSet&) = delete;
    // Ends and joins any vCPU threads still running.
    ~VcpuSet();

    // Adds a vCPU (before any runs) with the handler for its exits.
    VcpuRunner& add(kvm::Vcpu& vcpu, ExitHandler& handler);
    size_t size() const {
        std::lock_guard g(mu_);
        return cpus_.size();
    }
    VcpuRunner& runner(size_t i) { return cpu(i).runner; }

    // How a vCPU's loop ended.
    enum class End { kHandler, kStopped };

    // Marks the set running (a pause waiting for the start goes ahead).
    // Called by the machine once, before its vCPUs run.
    void start();
    // Runs vCPU `i` on the calling thread until its handler stops it or
    // stop() is called.
    Result<End> run_here(size_t i);
    // Runs every vCPU on its own thread ("vcpuN", with the caller's signal
    // mask); `done(i, result)` is called on that thread when its loop ends.
    void spawn(std::function<void(size_t, const Result<End>&)> done);
    // While the set runs (a thin VM's new process): starts vCPU `i`'s loop
    // again, with `handler`, on a thread of its own, once its previous
    // thread (if any) has ended; `done` as for spawn(). A vCPU started
    // during a pause parks before it first runs.
    // Fails (EAGAIN) when the host refuses the thread (a pids limit).
    Result<> launch(size_t i, ExitHandler& handler, std::function<void(size_t, const Result<End>&)> done);
    // Adds a vCPU while the set runs; launch() starts it. Returns its index.
    size_t add_running(kvm::Vcpu& vcpu, ExitHandler& handler);
    // Called first on each thread spawn() starts (a seccomp filter for the
    // thread kind); if it fails, that vCPU does not run and `done` gets the
    // error.
    void on_thread_start(std::function<Result<>()> start) { thread_start_ = std::move(start); }
    // Kicks every vCPU until its thread's loop has ended, then joins it.
    void join();
    // Marks the set exited (after the machine's last vCPU has ended).
    void finish();

    // --- control, from any thread ---
    // Waits (up to `timeout`) for a set that has not started yet, then parks
    // every vCPU. Fails with EBUSY unless running, ETIMEDOUT if a vCPU does
    // not park in time (the pause is then withdrawn).
    Result<> pause(std::chrono::milliseconds timeout = std::chrono::seconds(10));
    Result<> resume();
    void stop();
    bool stopping() const { return stopping_; }
    bool pause_requested() const { return pause_requested_; }
    RunState state() const;
    // Kicks every vCPU that is in KVM_RUN or a host call (halt probing).
    void kick_all();
    // CPU time of the vCPUs whose loops are running, in nanoseconds.
    uint64_t cpu_time_ns() const;

private:
    struct Cpu {
        Cpu(kvm::Vcpu& vcpu, ExitHandler& h) : runner(vcpu), handler(&h) {}
        VcpuRunner runner;
        ExitHandler* handler;
        std::thread thread;
        bool looping = false;  // guarded by mu_
        bool ended = false;    // guarded by mu_
    };

    Result<End> loop(Cpu& c);
    // Kicks every vCPU in KVM_RUN or a host call; `mu_` held.
    void kick_looping();
    size_t looping_locked() const;
    // Entry `i`, looked up under mu_ (the vector may grow meanwhile).
    Cpu& cpu(size_t i);
    // Starts c's loop on a new thread (c.thread not joinable); EAGAIN when
    // the host refuses the thread (the vCPU is then marked ended).
    Result<> start_thread(size_t i, std::function<void(size_t, const Result<End>&)> done);
    // The vCPU side of pause(): false when stopped instead of resumed.
    bool park(Cpu& c);

    // Entries are never removed (a thin VM reuses an ended one), so
    // references to them stay valid; the vector itself changes under mu_.
    std::vector<std::unique_ptr<Cpu>> cpus_;
    std::function<Result<>()> thread_start_;
    mutable std::mutex mu_;
    std::condition_variable changed_;
    RunState state_ = RunState::kCreated;
    std::atomic<bool> pause_requested_{false};
    std::atomic<bool> stopping_{false};
    size_t parked_ = 0;
};

}  // namespace vessel::cpu
