// FullVm's internals, shared by full_vm.cc (creation, running, control) and
// full_snapshot.cc (capture and restore). Not part of the public interface.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "cpu/vcpu_set.h"
#include "devices/bus.h"
#include "devices/console.h"
#include "devices/event_loop.h"
#include "devices/legacy/cmos.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/net.h"
#include "kvm/kvm.h"
#include "machine/full_vm.h"
#include "memory/guest_memory.h"

namespace vessel::machine {

struct FullVm::Impl {
    // One per vCPU: its exit dispatch (its runner is in `vcpus`).
    struct Cpu final : cpu::ExitHandler {
        Impl* vm = nullptr;
        std::unique_ptr<kvm::Vcpu> vcpu;
        cpu::VcpuRunner* runner = nullptr;
        std::vector<kvm_cpuid_entry2> cpuid;  // the table given to KVM (snapshots carry it)
        std::atomic<bool> probe_halt{false};
        std::atomic<bool> halted{false};
        std::atomic<uint64_t> exits{0};
        std::atomic<uint64_t> exits_io{0}, exits_intr{0};

        cpu::Action on_exit(kvm_run& run) override;
        cpu::Action crash(FullRunOutcome::Reason reason, const std::string& what);
    };

    FullVmConfig config;
    std::unique_ptr<kvm::System> system;
    std::unique_ptr<kvm::Vm> vm;
    std::unique_ptr<memory::GuestMemory> mem;
    std::unique_ptr<devices::EventLoop> loop;
    std::unique_ptr<devices::Console> console;
    devices::Bus pio, mmio;
    std::shared_ptr<devices::legacy::Serial> serial;
    std::shared_ptr<devices::legacy::I8042> i8042;
    std::shared_ptr<devices::legacy::Cmos> cmos;
    std::vector<Fd> irqfds;
    std::vector<std::shared_ptr<devices::virtio::MmioTransport>> transports;
    std::vector<std::unique_ptr<Cpu>> cpus;
    // Their loops, threads and the pause protocol. After `cpus`: it is
    // destroyed first, ending any vCPU thread still running.
    cpu::VcpuSet vcpus;
    std::string cmdline, summary;
    // What the back-ends turned out to be (recorded in snapshots): each
    // disk's size in sectors, the NIC's MAC (random unless given).
    std::vector<uint64_t> disk_sectors;
    std::optional<devices::virtio::MacAddress> net_mac;

    // Guards `outcome` until vcpus.stopping() says it is final.
    std::mutex stop_mu;

    // Serializes control calls (a resume waits for a snapshot); guards the
    // snapshot fields and the I/O thread's start and stop.
    mutable std::mutex control_mu;
    std::string started_at;
    std::string restored_from;
    std::string last_snapshot;  // parent for the next diff snapshot
    bool dirty_logging = false;
    FullRunOutcome outcome;
    Fd stop_event;  // wakes run()'s wait

    void stop(FullRunOutcome::Reason reason, const std::string& diagnostic = {});
    Result<int> add_irqfd(unsigned gsi);

    // --- set-up pieces shared by create() and restore() ---
    // Checks the configuration, opens KVM, creates the VM with its irqchip and PIT.
    Result<> open_machine();
    // Takes `memory` as guest RAM (KVM slot 0).
    Result<> attach_memory(memory::GuestMemory memory, uint32_t flags);
    // The I/O thread's loop, the legacy devices and the virtio devices.
    Result<> setup_io();
    Result<> setup_devices();
    Result<> setup_virtio();
    Result<> setup_memory_and_boot(uint64_t& entry, bool& pvh);
    Result<> setup_vcpu(Cpu& c, unsigned index, const std::vector<kvm_cpuid_entry2>& supported);
    Result<> setup_boot_cpu(Cpu& c, uint64_t entry, bool pvh);
    // Creates vCPU `index` (no state yet).
    Result<Cpu*> add_cpu(unsigned index);
    // Starts the I/O thread with the stop signals blocked, as run() does
    // for every thread it starts (the caller may be any thread).
    Result<> start_loop();

    // --- full_snapshot.cc ---
    Result<SnapshotInfo> write_snapshot_files(const SnapshotTarget& target, SnapshotType type);
    Result<> start_dirty_logging();
};

}  // namespace vessel::machine
