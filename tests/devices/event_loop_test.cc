#include "devices/event_loop.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>

namespace vessel::devices {
namespace {

void signal(int fd) {
    uint64_t one = 1;
    ASSERT_EQ(::write(fd, &one, 8), 8);
}

TEST(EventLoop, DispatchesReadyFdsWhenPolled) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop);
    Fd a(::eventfd(0, EFD_NONBLOCK)), b(::eventfd(0, EFD_NONBLOCK));
    int hits_a = 0, hits_b = 0;
    ASSERT_TRUE((*loop)->add(a.get(), EPOLLIN, [&](uint32_t) {
        uint64_t v;
        (void)!::read(a.get(), &v, 8);
        ++hits_a;
    }));
    ASSERT_TRUE((*loop)->add(b.get(), EPOLLIN, [&](uint32_t) {
        uint64_t v;
        (void)!::read(b.get(), &v, 8);
        ++hits_b;
    }));
    EXPECT_FALSE((*loop)->add(a.get(), EPOLLIN, [](uint32_t) {}));  // duplicate
    EXPECT_EQ(*(*loop)->poll(0), 0);
    signal(a.get());
    EXPECT_EQ(*(*loop)->poll(0), 1);
    EXPECT_EQ(hits_a, 1);
    (*loop)->remove(a.get());
    signal(a.get());
    signal(b.get());
    EXPECT_EQ(*(*loop)->poll(0), 1);
    EXPECT_EQ(hits_a, 1);
    EXPECT_EQ(hits_b, 1);
}

TEST(EventLoop, ThreadRunsCallbacksAndStopsCleanly) {
    auto loop = EventLoop::create();
    ASSERT_TRUE(loop);
    Fd a(::eventfd(0, EFD_NONBLOCK));
    std::atomic<int> hits = 0;
    ASSERT_TRUE((*loop)->add(a.get(), EPOLLIN, [&](uint32_t) {
        uint64_t v;
        (void)!::read(a.get(), &v, 8);
        ++hits;
    }));
    ASSERT_TRUE((*loop)->start());
    EXPECT_TRUE((*loop)->running());
    signal(a.get());
    for (int i = 0; i < 2000 && hits == 0; ++i) ::usleep(1000);
    EXPECT_EQ(hits, 1);
    (*loop)->stop();
    EXPECT_FALSE((*loop)->running());
    (*loop)->stop();                // idempotent
    ASSERT_TRUE((*loop)->start());  // restartable
    loop->reset();                  // destructor stops the thread
}

}  // namespace
}  // namespace vessel::devices
