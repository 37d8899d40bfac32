// One I/O thread on epoll: file descriptors registered with callbacks.
//
// Devices register their back-end fds (queue-notify eventfds, TAP, sockets,
// rate-limiter timers) and the loop calls them back on its thread. The loop
// can also be driven by hand (`poll`) from a single thread, which is what the
// device tests do to stay deterministic.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "base/fd.h"
#include "base/result.h"

namespace vessel::devices {

class EventLoop {
public:
    // Receives the epoll event bits (EPOLLIN, EPOLLOUT, EPOLLHUP, ...).
    using Callback = std::function<void(uint32_t events)>;

    static Result<std::unique_ptr<EventLoop>> create();
    ~EventLoop();  // stops the thread if running
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    // Thread-safe. `events` are epoll flags (EPOLLIN, EPOLLOUT, EPOLLET...).
    // A callback removed while it runs on the I/O thread finishes that call;
    // it is never called again after remove() returns on the I/O thread, and
    // at most once more when remove() is called from another thread.
    Result<> add(int fd, uint32_t events, Callback cb);
    Result<> modify(int fd, uint32_t events);
    void remove(int fd);

    // Waits up to `timeout_ms` (-1: forever) and dispatches what is ready.
    // Returns the number of callbacks run. Only one thread may poll.
    Result<int> poll(int timeout_ms);

    // Runs poll(-1) on a new thread ("io") until stop(). Idempotent.
    Result<> start();
    // Called first on each thread start() makes (a seccomp filter for the
    // I/O thread); if it fails, the thread says why and ends.
    void on_thread_start(std::function<Result<>()> start) { thread_start_ = std::move(start); }
    void stop();
    bool running() const { return thread_.joinable(); }

private:
    EventLoop() = default;
    struct Entry {
        Callback cb;
    };
    Fd epoll_;
    Fd wake_;  // eventfd that ends a poll() for stop()
    std::mutex mu_;
    std::map<int, std::shared_ptr<Entry>> entries_;
    std::thread thread_;
    std::function<Result<>()> thread_start_;
    bool stopping_ = false;
};

}  // namespace vessel::devices
