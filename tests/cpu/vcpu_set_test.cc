// VcpuSet's pause protocol on real vCPUs: two vCPUs in real mode, each
// looping on an `out` (an exit to the handler) forever. Real-mode code runs
// on every KVM here (PVM emulates it, slowly): enough for a loop of exits.
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include "cpu/vcpu_set.h"
#include "kvm/kvm.h"

namespace vessel::cpu {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t kCodeAddr = 0x1000;
constexpr uint16_t kPort = 0x10;

// Counts each vCPU's `out` exits; stops a vCPU when told to.
struct Counter final : ExitHandler {
    std::atomic<uint64_t> outs{0};
    std::atomic<bool> stop_next{false};
    Action on_exit(kvm_run& run) override {
        if (run.exit_reason == KVM_EXIT_INTR) return Action::kContinue;
        EXPECT_EQ(run.exit_reason, KVM_EXIT_IO) << describe_exit(run);
        if (run.exit_reason != KVM_EXIT_IO || run.io.port != kPort) return Action::kStop;
        ++outs;
        return stop_next ? Action::kStop : Action::kContinue;
    }
};

class VcpuSetTest : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0) << "this test needs a usable /dev/kvm";
        auto sys = kvm::System::open();
        ASSERT_TRUE(sys) << sys.error().message;
        sys_ = std::make_unique<kvm::System>(std::move(*sys));
        auto vm = sys_->create_vm();
        ASSERT_TRUE(vm) << vm.error().message;
        vm_ = std::make_unique<kvm::Vm>(std::move(*vm));
        (void)vm_->set_tss_addr(0xfffbd000);  // VT-x needs it for real mode
        mem_ = ::mmap(nullptr, kMemSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_NE(mem_, MAP_FAILED);
        // 1: out %al, $0x10 ; jmp 1b
        const uint8_t code[] = {0xe6, kPort, 0xeb, 0xfc};
        std::memcpy(static_cast<uint8_t*>(mem_) + kCodeAddr, code, sizeof code);
        ASSERT_TRUE(vm_->set_user_memory_region(0, 0, kMemSize, mem_));
        for (int i = 0; i < 2; ++i) {
            auto vcpu = vm_->create_vcpu(i);
            ASSERT_TRUE(vcpu) << vcpu.error().message;
            auto sregs = vcpu->get_sregs();
            ASSERT_TRUE(sregs);
            sregs->cs.base = 0;
            sregs->cs.selector = 0;
            ASSERT_TRUE(vcpu->set_sregs(*sregs));
            kvm_regs regs{};
            regs.rip = kCodeAddr;
            regs.rflags = 2;
            ASSERT_TRUE(vcpu->set_regs(regs));
            vcpus_.push_back(std::make_unique<kvm::Vcpu>(std::move(*vcpu)));
            set_.add(*vcpus_.back(), handlers_[i]);
        }
    }
    void TearDown() override {
        set_.stop();
        set_.join();
        if (mem_ && mem_ != MAP_FAILED) ::munmap(mem_, kMemSize);
    }
    uint64_t total() const { return handlers_[0].outs + handlers_[1].outs; }
    // Waits until every vCPU has made at least `n` more exits.
    bool both_advance(uint64_t n, std::chrono::seconds limit = 30s) {
        const uint64_t a = handlers_[0].outs, b = handlers_[1].outs;
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (std::chrono::steady_clock::now() < deadline) {
            if (handlers_[0].outs >= a + n && handlers_[1].outs >= b + n) return true;
            std::this_thread::sleep_for(1ms);
        }
        return false;
    }

    static constexpr size_t kMemSize = 64 << 10;
    std::unique_ptr<kvm::System> sys_;
    std::unique_ptr<kvm::Vm> vm_;
    void* mem_ = nullptr;
    std::vector<std::unique_ptr<kvm::Vcpu>> vcpus_;
    Counter handlers_[2];
    VcpuSet set_;  // last: destroyed first
};

TEST_F(VcpuSetTest, PauseParksEveryVcpuAndResumeLetsThemGo) {
    set_.start();
    set_.spawn(nullptr);
    ASSERT_TRUE(both_advance(10));

    ASSERT_TRUE(set_.pause()) << "pause";
    EXPECT_EQ(set_.state(), RunState::kPaused);
    const uint64_t parked_at = total();
    std::this_thread::sleep_for(200ms);
    EXPECT_EQ(total(), parked_at) << "a paused vCPU made exits";
    // A paused vCPU's registers are exact in KVM: it is on its loop, at the
    // `out` or the `jmp` (the `out` completed before it parked).
    for (auto& v : vcpus_) {
        auto regs = v->get_regs();
        ASSERT_TRUE(regs);
        EXPECT_TRUE(regs->rip == kCodeAddr + 2 || regs->rip == kCodeAddr) << std::hex << regs->rip;
    }
    EXPECT_EQ(set_.pause().error().sys_errno, EBUSY) << "a second pause";

    ASSERT_TRUE(set_.resume());
    EXPECT_EQ(set_.state(), RunState::kRunning);
    EXPECT_TRUE(both_advance(10)) << "the vCPUs did not run again";
    EXPECT_FALSE(set_.resume()) << "resume of a running set";
}

TEST_F(VcpuSetTest, PauseBeforeStartWaitsForTheVcpus) {
    Result<> paused = fail("not called");
    std::thread control([&] { paused = set_.pause(); });
    std::this_thread::sleep_for(200ms);  // the pause is waiting now
    set_.start();
    set_.spawn(nullptr);
    control.join();
    ASSERT_TRUE(paused) << paused.error().message;
    EXPECT_EQ(set_.state(), RunState::kPaused);
    ASSERT_TRUE(set_.resume());
    EXPECT_TRUE(both_advance(5));
}

TEST_F(VcpuSetTest, StopEndsParkedAndRunningLoops) {
    std::atomic<int> stopped{0};
    set_.start();
    set_.spawn([&](size_t, const Result<VcpuSet::End>& r) {
        if (r && *r == VcpuSet::End::kStopped) ++stopped;
    });
    ASSERT_TRUE(both_advance(5));
    ASSERT_TRUE(set_.pause());
    set_.stop();
    set_.join();
    EXPECT_EQ(stopped, 2);
    EXPECT_EQ(set_.pause().error().sys_errno, EBUSY);
    EXPECT_EQ(set_.cpu_time_ns(), 0u) << "no loop runs";
}

TEST_F(VcpuSetTest, PauseOfASetWhoseVcpuEndedFails) {
    set_.start();
    handlers_[0].stop_next = true;  // vCPU 0's loop ends at its first exit
    set_.spawn(nullptr);
    // Each has made its first exit (counted from 0: vCPU 0 may have made
    // its one exit before both_advance could take its count).
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while ((handlers_[0].outs == 0 || handlers_[1].outs == 0) && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    ASSERT_EQ(handlers_[0].outs, 1u);
    ASSERT_GE(handlers_[1].outs, 1u);
    auto paused = set_.pause(2s);
    ASSERT_FALSE(paused);
    EXPECT_EQ(paused.error().sys_errno, EBUSY) << paused.error().message;
    EXPECT_TRUE(both_advance(0));
    const uint64_t b = handlers_[1].outs;
    std::this_thread::sleep_for(100ms);
    EXPECT_GT(handlers_[1].outs.load(), b) << "the pause was not withdrawn";
}

TEST_F(VcpuSetTest, RunHereRunsOnTheCallingThreadUntilTheHandlerStops) {
    handlers_[1].stop_next = true;
    set_.start();
    auto end = set_.run_here(1);
    ASSERT_TRUE(end) << end.error().message;
    EXPECT_EQ(*end, VcpuSet::End::kHandler);
    EXPECT_EQ(handlers_[1].outs, 1u);
}

}  // namespace
}  // namespace vessel::cpu
