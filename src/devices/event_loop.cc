#include "devices/event_loop.h"

#include <pthread.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

namespace vessel::devices {

Result<std::unique_ptr<EventLoop>> EventLoop::create() {
    std::unique_ptr<EventLoop> loop(new EventLoop());
    loop->epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
    if (!loop->epoll_) return fail_errno("epoll_create1");
    loop->wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!loop->wake_) return fail_errno("eventfd");
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = loop->wake_.get();
    if (::epoll_ctl(loop->epoll_.get(), EPOLL_CTL_ADD, loop->wake_.get(), &ev) < 0)
        return fail_errno("epoll_ctl(wake)");
    return loop;
}

EventLoop::~EventLoop() { stop(); }

Result<> EventLoop::add(int fd, uint32_t events, Callback cb) {
    std::lock_guard lock(mu_);
    if (fd < 0 || fd == wake_.get() || entries_.contains(fd)) return fail("event loop: bad or duplicate fd", EINVAL);
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return fail_errno("epoll_ctl(add)");
    entries_[fd] = std::make_shared<Entry>(Entry{std::move(cb)});
    return {};
}

Result<> EventLoop::modify(int fd, uint32_t events) {
    std::lock_guard lock(mu_);
    if (!entries_.contains(fd)) return fail("event loop: fd not registered", ENOENT);
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return fail_errno("epoll_ctl(mod)");
    return {};
}

void EventLoop::remove(int fd) {
    std::lock_guard lock(mu_);
    if (entries_.erase(fd)) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

Result<int> EventLoop::poll(int timeout_ms) {
    epoll_event events[32];
    int n = ::epoll_wait(epoll_.get(), events, 32, timeout_ms);
    if (n < 0) {
        if (errno == EINTR) return 0;
        return fail_errno("epoll_wait");
    }
    int ran = 0;
    for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == wake_.get()) {
            uint64_t v;
            [[maybe_unused]] auto r = ::read(fd, &v, sizeof v);
            continue;
        }
        std::shared_ptr<Entry> e;
        {
            std::lock_guard lock(mu_);
            auto it = entries_.find(fd);
            if (it == entries_.end()) continue;  // removed by an earlier callback of this batch
            e = it->second;
        }
        e->cb(events[i].events);
        ++ran;
    }
    return ran;
}

Result<> EventLoop::start() {
    if (thread_.joinable()) return {};
    stopping_ = false;
    thread_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "io");
        if (thread_start_)
            if (auto r = thread_start_(); !r) {
                std::fprintf(stderr, "vessel: I/O thread: %s\n", r.error().message.c_str());
                return;
            }
        for (;;) {
            {
                std::lock_guard lock(mu_);
                if (stopping_) return;
            }
            if (auto r = poll(-1); !r) {
                std::fprintf(stderr, "vessel: I/O thread: %s\n", r.error().message.c_str());
                return;
            }
        }
    });
    return {};
}

void EventLoop::stop() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
    }
    uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake_.get(), &one, sizeof one);
    thread_.join();
}

}  // namespace vessel::devices
