// virtio-blk through the device model (guest-side harness -> MMIO transport ->
// split virtqueue -> preadv/pwritev) against direct pread/pwrite on the same
// file, and the rate limiter's achieved rate against its configuration.
//
//   devices_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "devices/virtio/blk.h"
#include "virtio_harness.h"

namespace vessel::testing {
namespace {

using namespace devices::virtio;

constexpr uint64_t kFileSize = 64ull << 20;
constexpr int kDepth = 32;  // requests in flight per batch (one notification)

// The benchmark file, created once and removed at exit.
struct BenchFile {
    std::string path = "/tmp/vessel-blk-bench-" + std::to_string(::getpid()) + ".img";
    BenchFile() {
        int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        std::vector<char> buf(1 << 20, 'v');
        for (uint64_t off = 0; off < kFileSize; off += buf.size())
            (void)!::pwrite(fd, buf.data(), buf.size(), off_t(off));
        ::fsync(fd);
        ::close(fd);
    }
    ~BenchFile() { ::unlink(path.c_str()); }
};

std::string make_file() {
    static BenchFile file;
    return file.path;
}

std::vector<uint64_t> offsets(uint64_t block, size_t n, bool random) {
    std::mt19937_64 rng(42);
    std::vector<uint64_t> out(n);
    uint64_t blocks = kFileSize / block;
    for (size_t i = 0; i < n; ++i) out[i] = (random ? rng() % blocks : i % blocks) * block;
    return out;
}

struct BlkRig {
    VirtioGuest g{uint64_t(kDepth) * (1 << 20) + (8 << 20)};
    struct Slot {
        uint64_t hdr, data, status;
    };
    std::vector<Slot> slots;

    explicit BlkRig(devices::RateLimit limit = {}) {
        auto b = Block::open({make_file(), false, limit});
        if (!b || !g.attach(std::move(*b)) || !g.start(256)) std::abort();
        for (int i = 0; i < kDepth; ++i) slots.push_back({g.alloc(16), g.alloc(1 << 20, 4096), g.alloc(1)});
    }
    void submit(const Slot& s, uint32_t type, uint64_t offset, uint32_t len) {
        uint32_t h[4] = {type, 0, uint32_t(offset / 512), uint32_t((offset / 512) >> 32)};
        std::memcpy(g.host(s.hdr, 16), h, 16);
        g.add_chain(0, {{s.hdr, 16, false}, {s.data, len, type == kBlkTIn}, {s.status, 1, true}});
    }
    int harvest() {
        int n = 0;
        while (auto u = g.next_used(0)) {
            (void)u;
            ++n;
        }
        return n;
    }
};

void BM_DeviceModel(benchmark::State& state, uint32_t type, bool random) {
    uint32_t block = uint32_t(state.range(0));
    BlkRig rig;
    auto offs = offsets(block, 1 << 16, random);
    size_t next = 0;
    for (auto _ : state) {
        for (int i = 0; i < kDepth; ++i) rig.submit(rig.slots[i], type, offs[next++ % offs.size()], block);
        rig.g.notify(0);
        if (rig.harvest() != kDepth || rig.g.failed()) state.SkipWithError("requests did not complete");
    }
    state.SetItemsProcessed(int64_t(state.iterations()) * kDepth);
    state.SetBytesProcessed(int64_t(state.iterations()) * kDepth * block);
}

void BM_Direct(benchmark::State& state, bool write, bool random) {
    uint32_t block = uint32_t(state.range(0));
    int fd = ::open(make_file().c_str(), O_RDWR | O_CLOEXEC);
    // One buffer per request in flight, like the guest's: same cache footprint.
    std::vector<std::vector<char>> bufs(kDepth, std::vector<char>(block, 'w'));
    auto offs = offsets(block, 1 << 16, random);
    size_t next = 0;
    for (auto _ : state) {
        for (int i = 0; i < kDepth; ++i) {
            off_t off = off_t(offs[next++ % offs.size()]);
            char* buf = bufs[i].data();
            ssize_t n = write ? ::pwrite(fd, buf, block, off) : ::pread(fd, buf, block, off);
            if (n != ssize_t(block)) state.SkipWithError("short transfer");
        }
        benchmark::ClobberMemory();
    }
    ::close(fd);
    state.SetItemsProcessed(int64_t(state.iterations()) * kDepth);
    state.SetBytesProcessed(int64_t(state.iterations()) * kDepth * block);
}

BENCHMARK_CAPTURE(BM_DeviceModel, read_seq, kBlkTIn, false)->Arg(4096)->Arg(65536)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_Direct, read_seq, false, false)->Arg(4096)->Arg(65536)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_DeviceModel, write_seq, kBlkTOut, false)->Arg(4096)->Arg(65536)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_Direct, write_seq, true, false)->Arg(4096)->Arg(65536)->Arg(1 << 20);
BENCHMARK_CAPTURE(BM_DeviceModel, read_rand, kBlkTIn, true)->Arg(4096);
BENCHMARK_CAPTURE(BM_Direct, read_rand, false, true)->Arg(4096);

// The rate limiter on a real clock: keep the queue full, let the limiter's
// timer pace the device, and compare the steady-state rate with the
// configured one (the first burst is excluded by a warm-up).
void BM_RateLimiterAccuracy(benchmark::State& state, bool bytes_limited) {
    uint32_t block = 64 << 10;
    devices::RateLimit limit;
    double configured;
    if (bytes_limited) {
        limit.bytes_per_sec = uint64_t(state.range(0)) << 20;  // MiB/s
        configured = double(limit.bytes_per_sec);
    } else {
        limit.ops_per_sec = uint64_t(state.range(0));
        configured = double(limit.ops_per_sec);
        block = 4096;
    }
    BlkRig rig(limit);
    auto offs = offsets(block, 1 << 12, false);
    size_t next = 0;
    double achieved = 0;
    for (auto _ : state) {
        int in_flight = 0;
        auto refill = [&] {
            while (in_flight < kDepth) {
                rig.submit(rig.slots[next % kDepth], kBlkTIn, offs[next % offs.size()], block);
                ++next;
                ++in_flight;
            }
            rig.g.w32(mmio::kQueueNotify, 0);
        };
        auto run_for = [&](uint64_t ns) {
            uint64_t done = 0, end = devices::monotonic_ns() + ns;
            while (devices::monotonic_ns() < end) {
                refill();
                (void)rig.g.loop->poll(10);
                int n = rig.harvest();
                in_flight -= n;
                done += uint64_t(n);
            }
            return done;
        };
        run_for(500'000'000);  // spend the initial burst
        uint64_t t0 = devices::monotonic_ns();
        uint64_t done = run_for(2'000'000'000);
        double secs = double(devices::monotonic_ns() - t0) / 1e9;
        achieved = bytes_limited ? double(done) * block / secs : double(done) / secs;
    }
    state.counters["configured"] = configured;
    state.counters["achieved"] = achieved;
    state.counters["error_pct"] = (achieved - configured) / configured * 100.0;
}

BENCHMARK_CAPTURE(BM_RateLimiterAccuracy, bytes_MiBps, true)
    ->Arg(20)
    ->Arg(100)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_RateLimiterAccuracy, iops, false)
    ->Arg(500)
    ->Arg(5000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace vessel::testing

BENCHMARK_MAIN();
