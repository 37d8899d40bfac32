#include "machine/full_vm.h"

#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "arch/x86/boot_params.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/mptable.h"
#include "arch/x86/x86.h"
#include "base/fd.h"
#include "base/text.h"
#include "cpu/vcpu_set.h"
#include "devices/bus.h"
#include "devices/console.h"
#include "devices/event_loop.h"
#include "devices/legacy/cmos.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/mmio_transport.h"
#include "devices/virtio/net.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "jail/seccomp.h"
#include "kvm/kvm.h"
#include "loader/linux_loader.h"
#include "machine/full_boot.h"
#include "machine/full_snapshot.h"
#include "machine/snapshot_dir.h"
#include "machine/virtio_slots.h"
#include "memory/guest_memory.h"

namespace vessel::machine {
namespace {

namespace x86 = arch::x86;

// The signals that stop a full machine (vessel boot's Ctrl-C and friends).
// They are taken synchronously by run(); other threads keep them blocked.
sigset_t stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    return set;
}

// KVM needs three pages for the VT-x real-mode TSS and one for the identity
// map, out of the guest's way, below 4 GiB.
constexpr uint64_t kKvmTssAddr = 0xfffbd000;
constexpr uint64_t kKvmIdentityMapAddr = 0xfffbc000;

constexpr uint32_t kApicLvtLint0 = 0x350, kApicLvtLint1 = 0x360;
constexpr uint32_t kApicDeliveryExtInt = 7, kApicDeliveryNmi = 4;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;

void set_lvt_delivery_mode(kvm_lapic_state& lapic, uint32_t reg, uint32_t mode) {
    uint32_t v;
    std::memcpy(&v, lapic.regs + reg, 4);
    v = (v & ~0x700u) | (mode << 8);
    std::memcpy(lapic.regs + reg, &v, 4);
}

// Writes 1 to an eventfd (a KVM irqfd): an edge on its GSI.
void signal_eventfd(int fd) {
    uint64_t one = 1;
    while (::write(fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

}  // namespace

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
    snapshot::DirtyTracking dirty;  // KVM's dirty logs; the parent of the next diff
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
    Result<> setup_vcpu(Cpu& c, unsigned index, const std::vector<kvm_cpuid_entry2>& supported);
    // Creates vCPU `index` (no state yet).
    Result<Cpu*> add_cpu(unsigned index);
    // Starts the I/O thread with the stop signals blocked, as run() does
    // for every thread it starts (the caller may be any thread).
    Result<> start_loop();

    // --- snapshots ---
    // The machine's records, from its paused vCPUs, KVM's chips and its devices.
    Result<FullVmRecord> capture_record();
    // Registers guest RAM with KVM with `flags` (slot 0).
    Result<> register_memory(uint32_t flags);
};

const char* describe(FullRunOutcome::Reason reason) {
    switch (reason) {
        case FullRunOutcome::Reason::kReset: return "the guest reset the machine";
        case FullRunOutcome::Reason::kPoweredOff: return "the guest powered off";
        case FullRunOutcome::Reason::kHalted: return "all vCPUs halted";
        case FullRunOutcome::Reason::kTripleFault: return "triple fault";
        case FullRunOutcome::Reason::kCrashed: return "the guest could not be run";
        case FullRunOutcome::Reason::kInterrupted: return "interrupted";
    }
    return "?";
}

void FullVm::Impl::stop(FullRunOutcome::Reason reason, const std::string& diagnostic) {
    {
        std::lock_guard lock(stop_mu);
        if (vcpus.stopping()) return;
        outcome.reason = reason;
        outcome.diagnostic = diagnostic;
        vcpus.stop();  // parked vCPUs wake and end, running ones are kicked
    }
    signal_eventfd(stop_event.get());
}

Result<int> FullVm::Impl::add_irqfd(unsigned gsi) {
    Fd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) return fail_errno("eventfd");
    kvm_irqfd spec{};
    spec.fd = static_cast<uint32_t>(fd.get());
    spec.gsi = gsi;
    if (auto r = vm->irqfd(spec); !r) return std::unexpected(r.error());
    irqfds.push_back(std::move(fd));
    return irqfds.back().get();
}

cpu::Action FullVm::Impl::Cpu::crash(FullRunOutcome::Reason reason, const std::string& what) {
    const kvm_regs& r = runner->regs();
    char buf[160];
    std::snprintf(buf, sizeof buf, " on vCPU %d at rip=0x%" PRIx64 " (%" PRIu64 " exits)", vcpu->id(),
                  static_cast<uint64_t>(r.rip), exits.load());
    vm->stop(reason, what + buf);
    return cpu::Action::kStop;
}

cpu::Action FullVm::Impl::Cpu::on_exit(kvm_run& run) {
    ++exits;
    if (vm->vcpus.stopping()) return cpu::Action::kStop;
    if (run.exit_reason == KVM_EXIT_IO || run.exit_reason == KVM_EXIT_MMIO) ++exits_io;
    if (run.exit_reason == KVM_EXIT_INTR) ++exits_intr;
    switch (run.exit_reason) {
        case KVM_EXIT_IO: {
            const size_t size = run.io.size, count = run.io.count;
            const size_t mmap_size = static_cast<size_t>(vm->system->vcpu_mmap_size());
            if (size == 0 || size > 8 || run.io.data_offset > mmap_size ||
                count * size > mmap_size - run.io.data_offset)
                return crash(FullRunOutcome::Reason::kCrashed, "malformed port I/O exit");
            uint8_t* data = reinterpret_cast<uint8_t*>(&run) + run.io.data_offset;
            for (size_t i = 0; i < count; ++i) {
                std::span<uint8_t> d(data + i * size, size);
                if (run.io.direction == KVM_EXIT_IO_OUT)
                    vm->pio.write(run.io.port, d);
                else
                    vm->pio.read(run.io.port, d);
            }
            return cpu::Action::kContinue;
        }
        case KVM_EXIT_MMIO: {
            if (run.mmio.len == 0 || run.mmio.len > 8)
                return crash(FullRunOutcome::Reason::kCrashed, "malformed MMIO exit");
            std::span<uint8_t> d(run.mmio.data, run.mmio.len);
            if (run.mmio.is_write)
                vm->mmio.write(run.mmio.phys_addr, d);
            else
                vm->mmio.read(run.mmio.phys_addr, d);
            return cpu::Action::kContinue;
        }
        case KVM_EXIT_INTR:
            if (probe_halt.exchange(false)) {
                auto mp = vcpu->get_mp_state();
                bool idle = mp && (mp->mp_state == KVM_MP_STATE_HALTED || mp->mp_state == KVM_MP_STATE_UNINITIALIZED ||
                                   mp->mp_state == KVM_MP_STATE_INIT_RECEIVED);
                bool interrupts_off = !(runner->regs().rflags & x86::rflags::kIF);
                halted = idle && (interrupts_off || mp->mp_state != KVM_MP_STATE_HALTED);
            }
            return cpu::Action::kContinue;
        case KVM_EXIT_HLT:
            // Only without an in-kernel LAPIC; ours has one.
            return crash(FullRunOutcome::Reason::kHalted, "hlt");
        case KVM_EXIT_SHUTDOWN: return crash(FullRunOutcome::Reason::kTripleFault, "triple fault");
        case KVM_EXIT_SYSTEM_EVENT:
            switch (run.system_event.type) {
                case KVM_SYSTEM_EVENT_RESET: vm->stop(FullRunOutcome::Reason::kReset); return cpu::Action::kStop;
                case KVM_SYSTEM_EVENT_SHUTDOWN:
                    vm->stop(FullRunOutcome::Reason::kPoweredOff);
                    return cpu::Action::kStop;
                default:
                    return crash(FullRunOutcome::Reason::kCrashed,
                                 "system event " + std::to_string(run.system_event.type));
            }
        case KVM_EXIT_INTERNAL_ERROR: {
            std::string what = "KVM internal error (suberror " + std::to_string(run.internal.suberror);
            if (run.internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
                what += ": instruction emulation failed";
                if (run.emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) {
                    what += ", bytes";
                    for (unsigned i = 0; i < run.emulation_failure.insn_size && i < 8; ++i) {
                        char b[4];
                        std::snprintf(b, sizeof b, " %02x", run.emulation_failure.insn_bytes[i]);
                        what += b;
                    }
                }
            }
            return crash(FullRunOutcome::Reason::kCrashed, what + ")");
        }
        default: return crash(FullRunOutcome::Reason::kCrashed, cpu::describe_exit(run));
    }
}

Result<> FullVm::Impl::setup_devices() {
    auto c = devices::Console::open(config.console);
    if (!c) return std::unexpected(c.error());
    console = std::make_unique<devices::Console>(std::move(*c));

    auto serial_irq = add_irqfd(devices::legacy::Serial::kCom1Irq);
    if (!serial_irq) return std::unexpected(serial_irq.error());
    devices::Console* out = console.get();
    serial = std::make_shared<devices::legacy::Serial>([fd = *serial_irq] { signal_eventfd(fd); },
                                                       [out](std::span<const uint8_t> b) { out->write(b); });
    pio.insert(devices::legacy::Serial::kCom1Port, devices::legacy::Serial::kSize, serial);
    i8042 = std::make_shared<devices::legacy::I8042>([this] { stop(FullRunOutcome::Reason::kReset); });
    pio.insert(devices::legacy::I8042::kBasePort, devices::legacy::I8042::kSize, i8042);
    cmos = std::make_shared<devices::legacy::Cmos>(config.mem_size, 0);
    pio.insert(devices::legacy::Cmos::kBasePort, devices::legacy::Cmos::kSize, cmos);

    if (console->input_fd() >= 0) {
        int fd = console->input_fd();
        auto* loop_ptr = loop.get();
        auto* ser = serial.get();
        // Input the guest has no room for is dropped: a UART has a 16-byte
        // FIFO, and a guest that does not read its console cannot expect more.
        auto r = loop->add(fd, EPOLLIN, [fd, loop_ptr, ser](uint32_t events) {
            uint8_t buf[64];
            ssize_t n = ::read(fd, buf, sizeof buf);
            if (n > 0) {
                ser->enqueue_input(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
            } else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || (events & (EPOLLHUP | EPOLLERR))) {
                loop_ptr->remove(fd);  // EOF on stdin: the console becomes output-only
            }
        });
        // stdin may be a regular file or /dev/null, which epoll refuses: no input then.
        (void)r;
    }
    return {};
}

Result<> FullVm::Impl::setup_virtio() {
    namespace virtio = devices::virtio;
    std::vector<std::unique_ptr<virtio::VirtioDevice>> devs;
    for (const auto& spec : config.disks) {
        auto c = virtio::parse_disk_spec(spec);
        if (!c) return fail("--disk " + spec + ": " + c.error().message, EINVAL);
        auto d = virtio::Block::open(*c);
        if (!d) return wrap("--disk " + c->path, d.error());
        disk_sectors.push_back((*d)->capacity_sectors());
        devs.push_back(std::move(*d));
    }
    if (config.net) {
        auto c = virtio::parse_net_spec(*config.net);
        if (!c) return fail("--net " + *config.net + ": " + c.error().message, EINVAL);
        if (net_mac) c->mac = net_mac;  // restore: the MAC the guest knows
        auto tap = virtio::open_tap(c->tap);
        if (!tap) return wrap("--net tap=" + c->tap, tap.error());
        auto d = virtio::Net::create(std::move(*tap), virtio::Net::kTap, c->mac, c->limit);
        if (!d) return wrap("--net", d.error());
        net_mac = (*d)->mac();
        devs.push_back(std::move(*d));
    }
    if (config.vsock_cid) {
        std::string spec =
            std::to_string(*config.vsock_cid) + (config.vsock_uds.empty() ? "" : ",uds=" + config.vsock_uds);
        auto c = virtio::parse_vsock_spec(spec);
        if (!c) return fail("--vsock: " + c.error().message, EINVAL);
        auto d = virtio::Vsock::create(*c);
        if (!d) return wrap("--vsock", d.error());
        devs.push_back(std::move(*d));
    }
    if (config.rng) devs.push_back(std::make_unique<virtio::Rng>());

    VirtioSlots slots(
        {.vm = vm.get(), .mmio = &mmio, .mem = mem.get(), .loop = loop.get(), .add_irqfd = [this](unsigned gsi) {
             return add_irqfd(gsi);
         }});
    for (auto& d : devs) {
        auto t = slots.attach(std::move(d));
        if (!t) return std::unexpected(t.error());
        transports.push_back(std::move(*t));
    }
    cmdline += slots.cmdline();
    return {};
}

Result<> FullVm::Impl::setup_vcpu(Cpu& c, unsigned index, const std::vector<kvm_cpuid_entry2>& supported) {
    c.cpuid = x86::build_vcpu_cpuid(supported, index, config.cpus);
    if (auto r = c.vcpu->set_cpuid(c.cpuid); !r) return std::unexpected(r.error());

    // The MSR state firmware leaves (Firecracker's set): syscall/sysenter
    // targets cleared, fast strings on, MTRRs enabled with write-back default.
    const std::vector<std::pair<uint32_t, uint64_t>> msrs = {
        {x86::msr::kSysenterCs, 0},
        {x86::msr::kSysenterEsp, 0},
        {x86::msr::kSysenterEip, 0},
        {x86::msr::kStar, 0},
        {x86::msr::kLstar, 0},
        {x86::msr::kCstar, 0},
        {x86::msr::kSfmask, 0},
        {x86::msr::kKernelGsBase, 0},
        {x86::msr::kTsc, 0},
        {x86::msr::kMiscEnable, 1},
        {kMsrMtrrDefType, (1u << 11) | 6},
    };
    if (!c.vcpu->set_msrs(msrs)) {
        // Some hosts (PVM) refuse a few of these; the rest still matter.
        for (const auto& m : msrs) (void)c.vcpu->set_msrs({m});
    }

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;
    fpu.mxcsr = 0x1f80;
    if (auto r = c.vcpu->set_fpu(fpu); !r) return std::unexpected(r.error());

    // LINT0 takes the 8259's ExtINT, LINT1 the NMI, as a BIOS programs them.
    auto lapic = c.vcpu->get_lapic();
    if (!lapic) return std::unexpected(lapic.error());
    set_lvt_delivery_mode(*lapic, kApicLvtLint0, kApicDeliveryExtInt);
    set_lvt_delivery_mode(*lapic, kApicLvtLint1, kApicDeliveryNmi);
    if (auto r = c.vcpu->set_lapic(*lapic); !r) return std::unexpected(r.error());
    return {};
}

FullVm::FullVm() : impl_(std::make_unique<Impl>()) {}

FullVm::~FullVm() {
    Impl& m = *impl_;
    m.stop(FullRunOutcome::Reason::kInterrupted);
    m.vcpus.join();
    if (m.loop) m.loop->stop();
}

Result<> FullVm::Impl::open_machine() {
    if (config.cpus == 0 || config.cpus > kMaxFullVmCpus)
        return fail("--cpus must be between 1 and " + std::to_string(kMaxFullVmCpus), EINVAL);
    if (config.mem_size < kMinFullVmMemory || config.mem_size > kMaxFullVmMemory)
        return fail("--mem must be between 32M and 3G for a full machine", EINVAL);

    auto event = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (event < 0) return fail_errno("eventfd");
    stop_event.reset(event);

    auto sys = kvm::System::open(config.kvm_path);
    if (!sys) return std::unexpected(sys.error());
    system = std::make_unique<kvm::System>(std::move(*sys));
    if (auto r = system->require({
            {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP", "a full machine uses KVM's in-kernel interrupt controllers"},
            {KVM_CAP_PIT2, "KVM_CAP_PIT2", "a full machine uses KVM's in-kernel PIT"},
            {KVM_CAP_IRQFD, "KVM_CAP_IRQFD", "device interrupts are delivered through irqfds"},
            {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD", "virtio notifications use ioeventfds"},
            {KVM_CAP_SYNC_REGS, "KVM_CAP_SYNC_REGS", "needed to read registers at each exit cheaply"},
            {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT", "needed to stop running vCPUs"},
        });
        !r)
        return std::unexpected(r.error());
    if (unsigned(system->check_extension(KVM_CAP_MAX_VCPUS)) < config.cpus &&
        unsigned(system->check_extension(KVM_CAP_NR_VCPUS)) < config.cpus)
        return fail("--cpus " + std::to_string(config.cpus) + ": KVM supports fewer vCPUs per VM", EINVAL);

    auto v = system->create_vm();
    if (!v) return std::unexpected(v.error());
    vm = std::make_unique<kvm::Vm>(std::move(*v));
    // VT-x needs these for real mode; other hosts ignore or refuse them.
    (void)vm->set_identity_map_addr(kKvmIdentityMapAddr);
    (void)vm->set_tss_addr(kKvmTssAddr);
    if (auto r = vm->create_irqchip(); !r) return std::unexpected(r.error());
    if (auto r = vm->create_pit2(); !r) return std::unexpected(r.error());
    return {};
}

Result<> FullVm::Impl::attach_memory(memory::GuestMemory memory, uint32_t flags) {
    mem = std::make_unique<memory::GuestMemory>(std::move(memory));
    return register_memory(flags);
}

Result<> FullVm::Impl::register_memory(uint32_t flags) {
    return vm->set_user_memory_region(0, 0, mem->size(), mem->host_base(), flags);
}

Result<> FullVm::Impl::setup_io() {
    auto l = devices::EventLoop::create();
    if (!l) return std::unexpected(l.error());
    loop = std::move(*l);
    if (auto r = setup_devices(); !r) return r;
    return setup_virtio();
}

Result<FullVm::Impl::Cpu*> FullVm::Impl::add_cpu(unsigned index) {
    auto c = std::make_unique<Cpu>();
    c->vm = this;
    auto vcpu = vm->create_vcpu(static_cast<int>(index));
    if (!vcpu) return std::unexpected(vcpu.error());
    c->vcpu = std::make_unique<kvm::Vcpu>(std::move(*vcpu));
    c->runner = &vcpus.add(*c->vcpu, *c);
    cpus.push_back(std::move(c));
    return cpus.back().get();
}

Result<> FullVm::Impl::start_loop() {
    sigset_t stops = stop_signals(), old_mask;
    pthread_sigmask(SIG_BLOCK, &stops, &old_mask);
    auto r = loop->start();
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return r;
}

Result<std::unique_ptr<FullVm>> FullVm::create(const FullVmConfig& config) {
    std::unique_ptr<FullVm> self(new FullVm());
    Impl& m = *self->impl_;
    m.config = config;
    m.cmdline = config.cmdline;
    if (auto r = m.open_machine(); !r) return std::unexpected(r.error());

    auto mem = memory::GuestMemory::create(config.mem_size, "vessel-full-ram");
    if (!mem) return std::unexpected(mem.error());
    if (auto r = m.attach_memory(std::move(*mem), 0); !r) return std::unexpected(r.error());
    if (auto r = m.setup_io(); !r) return std::unexpected(r.error());

    auto boot = load_kernel(config, m.cmdline, *m.mem);
    if (!boot) return std::unexpected(boot.error());
    m.summary = boot->summary;

    auto supported = m.system->supported_cpuid();
    if (!supported) return std::unexpected(supported.error());
    for (unsigned i = 0; i < config.cpus; ++i) {
        auto c = m.add_cpu(i);
        if (!c) return std::unexpected(c.error());
        if (auto r = m.setup_vcpu(**c, i, *supported); !r) return wrap("vCPU " + std::to_string(i), r.error());
        if (i == 0)
            if (auto r = set_boot_registers(*(*c)->vcpu, *m.mem, *boot); !r) return wrap("vCPU 0", r.error());
    }
    return self;
}

Result<FullRunOutcome> FullVm::run() {
    Impl& m = *impl_;

    // SIGINT/SIGTERM are taken synchronously here; every thread started below
    // inherits the blocked mask, so none of them is interrupted by Ctrl-C.
    sigset_t stops = stop_signals(), old_mask;
    pthread_sigmask(SIG_BLOCK, &stops, &old_mask);

    if (auto r = m.loop->start(); !r) {
        pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
        return std::unexpected(r.error());
    }
    std::mutex error_mu;
    std::optional<Error> run_error;
    {
        std::lock_guard lock(m.control_mu);
        m.started_at = now_rfc3339();
    }
    m.vcpus.start();  // a pause that came before the vCPUs started goes ahead
    m.vcpus.spawn([&m, &error_mu, &run_error](size_t, const Result<cpu::VcpuSet::End>& r) {
        if (r) return;
        {
            std::lock_guard lock(error_mu);
            if (!run_error) run_error = r.error();
        }
        m.stop(FullRunOutcome::Reason::kCrashed, r.error().message);
    });

    // Wait for a stop, a signal, or all vCPUs idle (probed every second).
    auto next_probe = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    bool probing = false;
    while (!m.vcpus.stopping()) {
        timespec ts{0, 100 * 1000 * 1000};
        int sig = sigtimedwait(&stops, nullptr, &ts);
        if (sig > 0) {
            m.stop(FullRunOutcome::Reason::kInterrupted, std::string("stopped by ") + sigabbrev_np(sig));
            break;
        }
        if (std::chrono::steady_clock::now() < next_probe) continue;
        if (m.vcpus.pause_requested()) {  // parked vCPUs are not idle: no halt probing
            probing = false;
            continue;
        }
        if (probing) {
            bool all_halted = true;
            for (auto& c : m.cpus) all_halted = all_halted && c->halted && !c->probe_halt;
            if (all_halted) m.stop(FullRunOutcome::Reason::kHalted);
        }
        for (auto& c : m.cpus) {
            c->halted = false;
            c->probe_halt = true;
        }
        m.vcpus.kick_all();
        probing = true;
        next_probe = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    }

    m.vcpus.join();
    {
        std::lock_guard lock(m.control_mu);  // a snapshot in progress restarts the loop: wait for it
        m.loop->stop();
        m.vcpus.finish();
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    if (run_error && m.outcome.reason == FullRunOutcome::Reason::kCrashed && m.outcome.diagnostic == run_error->message)
        return std::unexpected(*run_error);
    return m.outcome;
}

void FullVm::request_stop() { impl_->stop(FullRunOutcome::Reason::kReset); }

void FullVm::confine_threads() {
    impl_->vcpus.on_thread_start([]() -> Result<> {
        if (auto r = jail::load_vcpu_thread_filter(); !r) return wrap("vCPU thread", r.error());
        return {};
    });
    impl_->loop->on_thread_start(jail::load_io_thread_filter);
}

// Not under the control lock: a pause may wait for run() to start the vCPUs.
Result<> FullVm::pause() { return impl_->vcpus.pause(); }

Result<> FullVm::resume() {
    std::lock_guard lock(impl_->control_mu);
    return impl_->vcpus.resume();
}

void FullVm::shutdown() { impl_->stop(FullRunOutcome::Reason::kInterrupted, "stopped through the control API"); }

Description FullVm::describe() const {
    const Impl& m = *impl_;
    std::lock_guard lock(m.control_mu);
    Description d;
    d.state = m.vcpus.state();
    d.pid = ::getpid();
    d.program = m.config.kernel;
    d.argv = {m.config.kernel, m.cmdline};
    d.mem_bytes = m.mem ? m.mem->size() : 0;
    d.started_at = m.started_at;
    d.restored_from = m.restored_from;
    return d;
}

Metrics FullVm::metrics() const {
    const Impl& m = *impl_;
    Metrics out;
    for (const auto& c : m.cpus) {
        out.exits_io += c->exits_io;
        out.exits_intr += c->exits_intr;
        out.exits_other += c->exits - c->exits_io - c->exits_intr;
    }
    out.vcpu_time_ns = m.vcpus.cpu_time_ns();
    if (m.mem) out.guest_memory_touched_bytes = m.mem->resident_bytes();
    return out;
}
// ---------------------------------------------------------------- snapshots
//
// The records are each component's (cpu/vcpu_state, machine/kvm_chips_state,
// devices/*/persist); full_snapshot.* turns them into sections and checks
// them, snapshot_dir.* writes and reads the directory. Here they are
// gathered from this machine and given back to a new one.

Result<FullVmRecord> FullVm::Impl::capture_record() {
    FullVmRecord r;
    r.config = config;
    r.kernel_cmdline = cmdline;
    r.disk_sectors = disk_sectors;
    r.mac = net_mac;
    for (size_t i = 0; i < cpus.size(); ++i) {
        auto s = cpu::capture_vcpu(*cpus[i]->vcpu, cpu::kFullVcpuMsrs, &cpus[i]->cpuid);
        if (!s) return wrap("vCPU " + std::to_string(i), s.error());
        r.vcpus.push_back(std::move(*s));
    }
    auto chips = capture_kvm_devices(*vm);
    if (!chips) return std::unexpected(chips.error());
    r.chips = *chips;
    r.serial = serial->save();
    r.cmos = cmos->save();
    r.i8042 = i8042->save();
    for (const auto& t : transports) r.transports.push_back(t->save());
    return r;
}

Result<SnapshotInfo> FullVm::snapshot(const SnapshotTarget& target, SnapshotType type) {
    Impl& m = *impl_;
    std::lock_guard lock(m.control_mu);  // also keeps run() from stopping the I/O thread under us
    const VmState state = m.vcpus.state();
    if (state != VmState::kPaused || m.vcpus.stopping())
        return fail(std::string("VM is ") + (m.vcpus.stopping() ? "stopping" : to_string(state)) +
                        "; pause it before taking a snapshot",
                    EBUSY);
    if (type == SnapshotType::kDiff && m.dirty.last_snapshot.empty())
        return fail("no earlier snapshot of this VM to build a diff on; take a full snapshot first", EINVAL);
    // The I/O thread stands too: no device writes guest memory or moves a
    // queue while they are saved. Its fds keep their events for later.
    m.loop->stop();
    // The machine's moment first (vCPUs, in-kernel devices and clock), then
    // memory, which nothing changes while the vCPUs and the I/O thread stand.
    auto r = [&]() -> Result<SnapshotInfo> {
        auto record = m.capture_record();
        if (!record) return std::unexpected(record.error());
        return snapshot::write(target, type, *m.vm, *m.mem, m.dirty, full_config_json(*record), full_records(*record),
                               [&m] { return m.register_memory(KVM_MEM_LOG_DIRTY_PAGES); });
    }();
    auto restarted = m.start_loop();
    if (r && !restarted) return wrap("snapshot written, but the I/O thread did not restart", restarted.error());
    return r;
}

Result<std::unique_ptr<FullVm>> FullVm::restore(const std::string& dir, const ConsoleSpec& console,
                                                const std::string& kvm_path) {
    auto chain = snapshot::load_chain(dir, MachineKind::kFull, kFullSections);
    if (!chain) return std::unexpected(chain.error());
    const snapshot::Loaded& newest = chain->front();
    const std::string& where = newest.dir;
    // Decode and check everything before building anything.
    auto record = decode_full_snapshot(newest);
    if (!record) return std::unexpected(record.error());
    FullVmConfig config = record->config;
    config.console = console;
    config.kvm_path = kvm_path;

    std::unique_ptr<FullVm> self(new FullVm());
    Impl& m = *self->impl_;
    m.config = config;
    m.cmdline = config.cmdline;
    m.net_mac = record->mac;
    if (auto r = m.open_machine(); !r) return wrap(where, r.error());
    auto mem = snapshot::map_chain(*chain);
    if (!mem) return std::unexpected(mem.error());
    // Dirty logging from the start: the next snapshot may be a diff on this one.
    if (auto r = m.attach_memory(std::move(*mem), KVM_MEM_LOG_DIRTY_PAGES); !r) return std::unexpected(r.error());
    m.mem->start_dirty_tracking();
    m.dirty.logging = true;
    if (auto r = m.setup_io(); !r) return std::unexpected(r.error());
    // Same devices, same order: the same MMIO windows and IRQs as the guest knows.
    if (m.cmdline != record->kernel_cmdline)
        return fail(where + ": the re-created devices do not match the snapshot's (command line \"" + m.cmdline +
                        "\", recorded \"" + record->kernel_cmdline + "\")",
                    EINVAL);
    if (record->transports.size() != m.transports.size())
        return fail(where + ": the snapshot has state for " + std::to_string(record->transports.size()) +
                        " virtio devices, the machine has " + std::to_string(m.transports.size()),
                    EINVAL);

    auto supported = m.system->supported_cpuid();
    if (!supported) return std::unexpected(supported.error());
    for (unsigned i = 0; i < config.cpus; ++i) {
        const cpu::VcpuState& s = record->vcpus[i];
        if (auto r = check_cpuid(s.machine->cpuid, x86::build_vcpu_cpuid(*supported, i, config.cpus)); !r)
            return wrap(where, r.error());
        auto c = m.add_cpu(i);
        if (!c) return std::unexpected(c.error());
        (*c)->cpuid = s.machine->cpuid;
        if (auto r = cpu::apply_vcpu(*(*c)->vcpu, s); !r) return wrap(where + ": vCPU " + std::to_string(i), r.error());
    }
    // After the vCPUs: the I/O APIC may deliver to their LAPICs at once.
    if (auto r = apply_kvm_devices(*m.vm, record->chips); !r) return wrap(where, r.error());

    if (auto r = m.serial->restore(record->serial); !r) return wrap(where, r.error());
    if (auto r = m.cmos->restore(record->cmos); !r) return wrap(where, r.error());
    if (auto r = m.i8042->restore(record->i8042); !r) return wrap(where, r.error());
    for (size_t i = 0; i < m.transports.size(); ++i)
        if (auto r = m.transports[i]->restore(record->transports[i]); !r) return wrap(where, r.error());

    m.restored_from = newest.dir;
    m.dirty.last_snapshot = newest.dir;
    m.summary = "restored from " + newest.dir + ", " + std::to_string(m.mem->size() >> 20) + " MiB, " +
                std::to_string(config.cpus) + " vCPU" + (config.cpus > 1 ? "s" : "");
    return self;
}

std::string FullVm::vsock_socket() const { return vsock_socket_path(impl_->config); }

std::string vsock_socket_path(const FullVmConfig& c) {
    if (!c.vsock_cid) return {};
    auto spec = devices::virtio::parse_vsock_spec(std::to_string(*c.vsock_cid) +
                                                  (c.vsock_uds.empty() ? "" : ",uds=" + c.vsock_uds));
    return spec ? spec->uds_path : std::string();
}

std::string FullVm::console_path() const { return impl_->console ? impl_->console->path() : std::string(); }
std::string FullVm::boot_summary() const { return impl_->summary; }
std::string FullVm::kernel_cmdline() const { return impl_->cmdline; }

}  // namespace vessel::machine
