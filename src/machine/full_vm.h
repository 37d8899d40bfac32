// A full machine: an unmodified Linux kernel booted through the Linux x86
// boot protocol (vmlinux PVH or 64-bit entry, bzImage 64-bit entry) on a
// minimal PC — KVM's in-kernel PIC/IOAPIC/LAPIC and PIT, a 16550A serial
// console, an i8042 for reset, a CMOS RTC, an MP table for N vCPUs, and
// virtio-mmio devices.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "devices/console.h"
#include "machine/control.h"

namespace vessel::machine {

using devices::ConsoleSpec;

enum class BootEntry {
    kAuto,     // vmlinux: PVH when the note exists, else 64-bit; bzImage: 64-bit
    kPvh,      // 32-bit PVH entry (vmlinux with a XEN_ELFNOTE_PHYS32_ENTRY note)
    kLinux64,  // 64-bit boot protocol entry (startup_64) with a zero page
};

// Used when no --cmdline is given.
inline constexpr const char* kDefaultKernelCmdline = "console=ttyS0 reboot=k panic=1 pci=off";

struct FullVmConfig {
    std::string kernel;  // vmlinux ELF or bzImage
    std::string initrd;  // optional
    std::string cmdline = kDefaultKernelCmdline;
    unsigned cpus = 1;
    uint64_t mem_size = 512ull << 20;
    BootEntry entry = BootEntry::kAuto;
    ConsoleSpec console;
    // virtio devices, as the CLI flags spell them (parsed by devices/virtio).
    std::vector<std::string> disks;  // "PATH[,ro][,...]"
    std::optional<std::string> net;  // "tap=NAME[,mac=..][,...]"
    std::optional<uint32_t> vsock_cid;
    std::string vsock_uds;  // host Unix socket path for vsock; empty: a default
    bool rng = false;
    std::string kvm_path = "/dev/kvm";
};

// Limits of this machine model.
inline constexpr unsigned kMaxFullVmCpus = 254;              // MP table APIC IDs
inline constexpr uint64_t kMaxFullVmMemory = 0xc0000000ull;  // RAM ends below the MMIO hole
inline constexpr uint64_t kMinFullVmMemory = 32ull << 20;

struct FullRunOutcome {
    enum class Reason {
        kReset,        // i8042 reset, KVM reset event: the guest rebooted (or powered off via reboot)
        kPoweredOff,   // KVM shutdown system event
        kHalted,       // every vCPU halted with interrupts disabled
        kTripleFault,  // KVM_EXIT_SHUTDOWN
        kCrashed,      // KVM could not run the guest (internal error, failed entry, ...)
        kInterrupted,  // SIGINT/SIGTERM (Ctrl-C)
    };
    Reason reason = Reason::kReset;
    std::string diagnostic;  // one line for the abnormal reasons
};
const char* describe(FullRunOutcome::Reason reason);

// The host socket of the vsock device `config` asks for ("" for none).
std::string vsock_socket_path(const FullVmConfig& config);

class FullVm final : public Controllable {
public:
    // Errors: ENOENT/EACCES (a file), ENOEXEC (not a bootable kernel), ENOMEM
    // (does not fit in --mem), others (host/KVM problems).
    static Result<std::unique_ptr<FullVm>> create(const FullVmConfig& config);
    // Rebuilds a machine from a snapshot directory (docs/snapshot-format.md):
    // the recorded configuration (memory, vCPUs, devices; disks reopened by
    // path and refused if missing or resized, the TAP by name, the vsock
    // socket), memory mapped copy-on-write from the snapshot, then every
    // vCPU, the in-kernel irqchip, PIT and clock, and the devices. The
    // console is `console`, not the original one. Errors: ENOENT (a disk is
    // missing), EINVAL (the snapshot is damaged, of a thin VM, or does not
    // fit this host), others (host/KVM problems).
    static Result<std::unique_ptr<FullVm>> restore(const std::string& dir, const ConsoleSpec& console,
                                                   const std::string& kvm_path = "/dev/kvm");
    ~FullVm();

    // Runs until the guest resets, halts or crashes, or SIGINT/SIGTERM arrive
    // (blocked in the calling thread for the duration and handled there).
    Result<FullRunOutcome> run();

    // Thread-safe: ends run() as if the guest had reset.
    void request_stop();

    // Control (thread-safe). Pause parks every vCPU thread between exits;
    // the in-kernel timers keep running, so the guest sees time pass.
    // snapshot() needs a paused machine (EBUSY otherwise); a diff snapshot
    // holds the pages written since the previous snapshot of this machine
    // (KVM's dirty log) and names it as its parent. The I/O thread is
    // stopped while the snapshot is written, so no device touches memory.
    // Each vCPU thread and the I/O thread, once started, stack their
    // thread kind's seccomp filter on the process's (jail/seccomp.h). Call
    // before run().
    void confine_threads();
    Result<> pause() override;
    Result<> resume() override;
    Result<SnapshotInfo> snapshot(const SnapshotTarget& target, SnapshotType type) override;
    void shutdown() override;
    Description describe() const override;
    Metrics metrics() const override;

    // The pty's slave path with ConsoleSpec::kPty (empty otherwise).
    std::string console_path() const;
    // The vsock device's host socket ("" without one): guest connections
    // to port P reach "<it>_P".
    std::string vsock_socket() const;
    // One line: entry path, entry point, memory, vCPUs (for --verbose output).
    std::string boot_summary() const;
    // The final kernel command line (with virtio-mmio device entries).
    std::string kernel_cmdline() const;

    struct Impl;

private:
    FullVm();
    std::unique_ptr<Impl> impl_;
};

}  // namespace vessel::machine
