// Snapshot state below the machine: the vCPU record, KVM's in-kernel device
// state, the device state structs and their encoding — round trips, and
// refusal of values a snapshot must not be able to smuggle in. Uses
// /dev/kvm for what only KVM can check (no KVM is a failure, not a skip).
#include <fcntl.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "../devices/virtio_harness.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/x86.h"
#include "cpu/vcpu_state.h"
#include "devices/legacy/persist.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/persist.h"
#include "devices/virtio/rng.h"
#include "devices/virtio/vsock.h"
#include "kvm/kvm.h"
#include "machine/full_vm.h"
#include "machine/kvm_chips_state.h"
#include "machine/thin_snapshot.h"
#include "machine/thin_vm.h"
#include "state/format.h"
#include "thin/process_state.h"

namespace vessel {
namespace {

namespace fs = std::filesystem;
namespace legacy = devices::legacy;
namespace virtio = devices::virtio;
using state::Reader;
using state::Writer;
using testing::VirtioGuest;

std::string_view view(const std::vector<uint8_t>& v) { return {reinterpret_cast<const char*>(v.data()), v.size()}; }

uint8_t in(devices::BusDevice& d, uint64_t off) {
    uint8_t v = 0;
    d.read(off, std::span<uint8_t>(&v, 1));
    return v;
}
void out(devices::BusDevice& d, uint64_t off, uint8_t v) { d.write(off, std::span<const uint8_t>(&v, 1)); }

// ------------------------------------------------------------ KVM

struct KvmVm {
    kvm::System sys;
    kvm::Vm vm;
    std::vector<kvm_cpuid_entry2> supported;
};

std::unique_ptr<KvmVm> open_vm(bool irqchip) {
    auto sys = kvm::System::open();
    EXPECT_TRUE(sys) << (sys ? "" : sys.error().message);
    if (!sys) return nullptr;
    auto vm = sys->create_vm();
    EXPECT_TRUE(vm);
    if (!vm) return nullptr;
    if (irqchip) {
        EXPECT_TRUE(vm->create_irqchip());
        EXPECT_TRUE(vm->create_pit2());
    }
    auto supported = sys->supported_cpuid();
    EXPECT_TRUE(supported);
    return std::unique_ptr<KvmVm>(
        new KvmVm{std::move(*sys), std::move(*vm), supported ? *supported : std::vector<kvm_cpuid_entry2>{}});
}

class KvmState : public ::testing::Test {
protected:
    void SetUp() override { ASSERT_EQ(::access("/dev/kvm", R_OK | W_OK), 0) << "these tests need a usable /dev/kvm"; }
};

// The kernel's kvm_cpuid2/kvm_msrs put their entries at offset 8; C++ puts
// the flexible arrays elsewhere. A wrapper that used the C++ structs would
// read leaf 0 from the wrong bytes and set MSR 0 instead of the one named.
TEST_F(KvmState, CpuidAndMsrEntriesReachKvmIntact) {
    auto k = open_vm(false);
    ASSERT_TRUE(k);
    const kvm_cpuid_entry2* leaf0 = arch::x86::find_cpuid(k->supported, 0);
    ASSERT_NE(leaf0, nullptr);
    char vendor[13] = {};
    std::memcpy(vendor, &leaf0->ebx, 4);
    std::memcpy(vendor + 4, &leaf0->edx, 4);
    std::memcpy(vendor + 8, &leaf0->ecx, 4);
    EXPECT_TRUE(std::string(vendor) == "AuthenticAMD" || std::string(vendor) == "GenuineIntel") << vendor;
    ASSERT_NE(arch::x86::find_cpuid(k->supported, 1), nullptr);

    auto vcpu = k->vm.create_vcpu(0);
    ASSERT_TRUE(vcpu);
    ASSERT_TRUE(vcpu->set_cpuid(arch::x86::build_vcpu_cpuid(k->supported, 0, 1)));
    const uint64_t star = 0x0023001000000000ull, lstar = 0xffffffff81000000ull;
    ASSERT_TRUE(vcpu->set_msrs({{arch::x86::msr::kStar, star}, {arch::x86::msr::kLstar, lstar}}));
    auto got = vcpu->get_msrs({arch::x86::msr::kLstar, arch::x86::msr::kStar});
    ASSERT_TRUE(got) << got.error().message;
    EXPECT_EQ((*got)[0], lstar);
    EXPECT_EQ((*got)[1], star);
}

TEST_F(KvmState, FullVcpuRecordRoundTripsThroughKvm) {
    auto k = open_vm(true);
    ASSERT_TRUE(k);
    auto cpuid = arch::x86::build_vcpu_cpuid(k->supported, 0, 1);
    auto a = k->vm.create_vcpu(0);
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->set_cpuid(cpuid));
    ASSERT_TRUE(a->set_msrs({{arch::x86::msr::kLstar, 0xffffffff81234560ull}}));
    auto regs = a->get_regs();
    ASSERT_TRUE(regs);
    regs->rip = 0x1234567;
    regs->rbx = 0xfeedface;
    ASSERT_TRUE(a->set_regs(*regs));

    auto captured = cpu::capture_vcpu(*a, cpu::kFullVcpuMsrs, &cpuid);
    ASSERT_TRUE(captured) << captured.error().message;
    Writer w;
    cpu::put_vcpu(w, *captured);
    auto bytes = w.take();
    Reader r(view(bytes));
    auto decoded = cpu::get_vcpu(r, cpu::kFullVcpuMsrs, true);
    ASSERT_TRUE(decoded) << decoded.error().message;
    EXPECT_TRUE(r.at_end());
    EXPECT_EQ(decoded->machine->cpuid.size(), cpuid.size());

    // Onto a vCPU of another VM.
    auto k2 = open_vm(true);
    ASSERT_TRUE(k2);
    auto b = k2->vm.create_vcpu(0);
    ASSERT_TRUE(b);
    ASSERT_TRUE(cpu::apply_vcpu(*b, *decoded)) << "apply failed";
    EXPECT_EQ(b->get_regs()->rip, 0x1234567u);
    EXPECT_EQ(b->get_regs()->rbx, 0xfeedfaceu);
    EXPECT_EQ((*b->get_msrs({arch::x86::msr::kLstar}))[0], 0xffffffff81234560ull);
    EXPECT_EQ(std::memcmp(b->get_lapic()->regs, captured->machine->lapic.regs, 0x20), 0);  // APIC ID and version

    // Control registers KVM must refuse (paging without protected mode).
    auto bad = *decoded;
    bad.sregs.cr0 = arch::x86::cr0::kPG;
    auto c = k2->vm.create_vcpu(1);
    ASSERT_TRUE(c);
    auto refused = cpu::apply_vcpu(*c, bad);
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("KVM refused the snapshot's vCPU state (KVM_SET_SREGS"), std::string::npos)
        << refused.error().message;
}

TEST_F(KvmState, VcpuRecordRefusesWhatASnapshotCannotHold) {
    cpu::VcpuState s;
    s.msrs = {{arch::x86::msr::kLstar, 1}};
    Writer thin;
    cpu::put_vcpu(thin, s);
    auto thin_bytes = thin.take();
    {
        Reader r(view(thin_bytes));
        auto d = cpu::get_vcpu(r, cpu::kThinVcpuMsrs, false);
        ASSERT_TRUE(d);
        EXPECT_TRUE(r.at_end());
        EXPECT_FALSE(d->machine);
    }
    {
        Reader r(view(thin_bytes));  // a thin record where a full machine's is expected
        auto d = cpu::get_vcpu(r, cpu::kFullVcpuMsrs, true);
        ASSERT_FALSE(d);
        EXPECT_NE(d.error().message.find("is that of a thin VM"), std::string::npos) << d.error().message;
        EXPECT_EQ(d.error().fault, state::RecordFault::kWrongMachine);
    }
    {
        Reader r(view(thin_bytes));  // an MSR outside the list
        auto d = cpu::get_vcpu(r, std::vector<uint32_t>{arch::x86::msr::kStar}, false);
        ASSERT_FALSE(d);
        EXPECT_EQ(d.error().fault, state::RecordFault::kMalformed);
    }
    s.machine.emplace();
    s.machine->cpuid.resize(cpu::kMaxCpuidEntries + 1);
    Writer full;
    cpu::put_vcpu(full, s);
    auto full_bytes = full.take();
    {
        Reader r(view(full_bytes));
        auto d = cpu::get_vcpu(r, cpu::kFullVcpuMsrs, true);
        ASSERT_FALSE(d);
        EXPECT_NE(d.error().message.find("CPUID entries"), std::string::npos) << d.error().message;
        EXPECT_EQ(d.error().fault, state::RecordFault::kMalformed);
    }
    s.machine->cpuid.resize(4);
    s.machine->mp_state = 77;
    Writer mp;
    cpu::put_vcpu(mp, s);
    auto mp_bytes = mp.take();
    {
        Reader r(view(mp_bytes));
        EXPECT_FALSE(cpu::get_vcpu(r, cpu::kFullVcpuMsrs, true));
    }
    for (size_t cut : {size_t(10), mp_bytes.size() / 2, mp_bytes.size() - 1}) {
        auto truncated = mp_bytes;
        truncated.resize(cut);
        Reader r(view(truncated));
        auto d = cpu::get_vcpu(r, cpu::kFullVcpuMsrs, true);
        ASSERT_FALSE(d) << cut;
        EXPECT_EQ(d.error().fault, state::RecordFault::kTruncated) << cut << ": " << d.error().message;
    }
}

TEST_F(KvmState, InKernelDevicesRoundTripAndBadValuesAreRefused) {
    auto k = open_vm(true);
    ASSERT_TRUE(k);
    auto captured = machine::capture_kvm_devices(k->vm);
    ASSERT_TRUE(captured) << captured.error().message;
    captured->clock.clock += 5'000'000'000ull;  // guest time moves to the snapshot's
    Writer w;
    machine::put_kvm_devices(w, *captured);
    auto bytes = w.take();
    Reader r(view(bytes));
    auto decoded = machine::get_kvm_devices(r);
    ASSERT_TRUE(decoded) << decoded.error().message;
    auto k2 = open_vm(true);
    ASSERT_TRUE(k2);
    ASSERT_TRUE(machine::apply_kvm_devices(k2->vm, *decoded));
    auto clock = k2->vm.get_clock();
    ASSERT_TRUE(clock);
    EXPECT_GE(clock->clock, captured->clock.clock);
    EXPECT_LT(clock->clock, captured->clock.clock + 5'000'000'000ull);

    auto damaged = [&](auto&& change) {
        auto s = *captured;
        change(s);
        Writer dw;
        machine::put_kvm_devices(dw, s);
        auto b = dw.take();
        Reader dr(view(b));
        return machine::get_kvm_devices(dr);
    };
    auto fault_of = [](const auto& decoded) {
        return decoded ? std::optional<state::RecordFault>() : decoded.error().fault;
    };
    const auto kMalformed = state::RecordFault::kMalformed;
    EXPECT_EQ(
        fault_of(damaged([](machine::KvmDeviceState& s) { s.irqchips[2].chip.ioapic.base_address = 0xd0000000; })),
        kMalformed);
    EXPECT_EQ(fault_of(damaged([](machine::KvmDeviceState& s) { std::swap(s.irqchips[0], s.irqchips[1]); })),
              kMalformed);
    EXPECT_EQ(fault_of(damaged([](machine::KvmDeviceState& s) { s.pit.channels[0].mode = 7; })), kMalformed);
    EXPECT_EQ(fault_of(damaged([](machine::KvmDeviceState& s) { s.pit.channels[1].count = 0x20000; })), kMalformed);
    auto half = bytes;
    half.resize(half.size() / 2);
    Reader hr(view(half));
    EXPECT_EQ(fault_of(machine::get_kvm_devices(hr)), state::RecordFault::kTruncated);
}

// ------------------------------------------------------------ legacy devices

// Found by fuzz/state_file_fuzz (UBSan, ./dev test --sanitize): an empty
// section was copied with memcpy from an empty vector's null data().
TEST(StateFile, EmptySectionRoundTrips) {
    char tmpl[] = "/tmp/vessel-state-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string path = std::string(tmpl) + "/state.bin";
    state::Sections sections{{state::Section::kConfig, {}}, {state::Section::kMemory, {1, 2, 3}}};
    ASSERT_TRUE(state::write_state_file(path, sections));
    auto back = state::read_state_file(path);
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(*back, sections);
    fs::remove_all(tmpl);
}

// ------------------------------------------------------------ thin process

TEST(ProcessState, RoundTripsAndNamesItsFault) {
    thin::ProcessSnapshot p;
    p.cwd = "/work";
    p.brk_start = 0x600000;
    p.brk = 0x621000;
    p.files.push_back({thin::ProcessSnapshot::File::kPath, -1, "/data/log", O_WRONLY | O_APPEND, 42, false});
    p.descriptors.push_back({3, 0, true});
    p.descriptors.push_back({7, 0, false});  // a dup of 3: one file
    auto encode = [](const thin::ProcessSnapshot& s) {
        Writer w;
        thin::put_process(w, s);
        return w.take();
    };
    auto bytes = encode(p);
    auto back = thin::get_process(Reader(view(bytes)));
    ASSERT_TRUE(back) << back.error().message;
    EXPECT_EQ(back->cwd, "/work");
    EXPECT_EQ(back->brk, 0x621000u);
    ASSERT_EQ(back->descriptors.size(), 2u);
    EXPECT_EQ(back->descriptors[1].file, 0u);
    EXPECT_EQ(back->files.at(0).offset, 42);

    auto fault_of = [&](const thin::ProcessSnapshot& s) {
        auto b = encode(s);
        auto d = thin::get_process(Reader(view(b)));
        return d ? std::optional<state::RecordFault>() : d.error().fault;
    };
    auto relative = p;
    relative.cwd = "work";
    EXPECT_EQ(fault_of(relative), state::RecordFault::kMalformed);
    auto dangling = p;
    dangling.descriptors[1].file = 5;  // no such file
    EXPECT_EQ(fault_of(dangling), state::RecordFault::kMalformed);
    auto many = p;
    many.files.resize(thin::FdTable::kMaxFds + 1, p.files[0]);
    auto d = thin::get_process(Reader(view(encode(many))));
    ASSERT_FALSE(d);
    EXPECT_EQ(d.error().fault, state::RecordFault::kMalformed);
    EXPECT_EQ(d.error().message, "process state: too many files");
    EXPECT_EQ(Error(d.error()).sys_errno, EINVAL);  // what callers above the records see
}

// Section 9: pending signals with their codes, the mask a wait gives back
// and the interval timer; a damaged record is refused, never applied.
TEST(ThinState, SignalStateRoundTripsAndIsChecked) {
    thin::ProcessSnapshot p;
    p.pending_signals = 1ull << (SIGUSR1 - 1);
    p.pending_codes[SIGUSR1 - 1] = SI_TKILL;
    p.restore_mask = 0x4000;
    p.real_timer.it_value = {999, 500000};
    auto encode = [](const thin::ProcessSnapshot& s) {
        Writer w;
        thin::put_signals(w, s);
        return w.take();
    };
    auto bytes = encode(p);
    thin::ProcessSnapshot back;
    auto r = thin::get_signals(Reader(view(bytes)), back);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(back.pending_signals, p.pending_signals);
    EXPECT_EQ(back.pending_codes[SIGUSR1 - 1], SI_TKILL);
    EXPECT_EQ(back.restore_mask, std::optional<uint64_t>(0x4000));
    EXPECT_EQ(back.real_timer.it_value.tv_sec, 999);
    EXPECT_EQ(back.real_timer.it_value.tv_usec, 500000);

    auto bad_timer = p;
    bad_timer.real_timer.it_interval.tv_usec = 1000000;
    EXPECT_FALSE(thin::get_signals(Reader(view(encode(bad_timer))), back));
    auto flag = bytes;
    flag[8 + 64 * 4] = 2;  // the mask's presence byte
    EXPECT_FALSE(thin::get_signals(Reader(view(flag)), back));
    auto longer = bytes;
    longer.push_back(0);
    EXPECT_FALSE(thin::get_signals(Reader(view(longer)), back));
    bytes.pop_back();
    EXPECT_FALSE(thin::get_signals(Reader(view(bytes)), back));
}

TEST(LegacyState, SerialRoundTripsRegistersAndUnreadInput) {
    legacy::Serial a(nullptr, nullptr);
    out(a, 3, 0x80);  // DLAB: divisor 0x0201
    out(a, 0, 0x01);
    out(a, 1, 0x02);
    out(a, 3, 0x1b);  // 8E1
    out(a, 1, 0x05);  // IER: RX data, line status
    out(a, 4, 0x0b);  // DTR, RTS, OUT2
    out(a, 7, 0x42);
    out(a, 2, 0x01);  // FIFOs on
    const uint8_t input[] = {'a', 'b', 'c'};
    ASSERT_EQ(a.enqueue_input(input), 3u);
    EXPECT_EQ(in(a, 0), 'a');

    Writer w;
    devices::legacy::put_serial(w, a.save());
    auto bytes = w.take();
    Reader r(view(bytes));
    auto s = devices::legacy::get_serial(r);
    ASSERT_TRUE(s);
    EXPECT_TRUE(r.at_end());
    int irqs = 0;
    legacy::Serial b([&] { ++irqs; }, nullptr);
    ASSERT_TRUE(b.restore(*s));
    EXPECT_EQ(irqs, 0);  // the irqchip's state says whether an interrupt is pending
    EXPECT_EQ(in(b, 3), 0x1b);
    EXPECT_EQ(in(b, 1), 0x05);
    EXPECT_EQ(in(b, 4), 0x0b);
    EXPECT_EQ(in(b, 7), 0x42);
    EXPECT_EQ(in(b, 2), 0xc4);  // FIFOs on, RX data pending
    EXPECT_EQ(in(b, 0), 'b');
    EXPECT_EQ(in(b, 0), 'c');
    EXPECT_EQ(in(b, 5) & 1, 0);
    out(b, 3, 0x9b);
    EXPECT_EQ(in(b, 0), 0x01);
    EXPECT_EQ(in(b, 1), 0x02);
}

TEST(LegacyState, SerialRefusesWhatA16550CannotHold) {
    legacy::Serial s(nullptr, nullptr);
    legacy::SerialState st;
    st.rx.assign(legacy::Serial::kRxFifoSize + 1, 'x');
    EXPECT_FALSE(s.restore(st));
    st.rx.clear();
    st.ier = 0xf0;
    EXPECT_FALSE(s.restore(st));
    st.ier = 0;
    st.mcr = 0xe0;
    EXPECT_FALSE(s.restore(st));
    // Longer input than the FIFO is refused by the decoder already.
    Writer w;
    legacy::SerialState big;
    big.rx.assign(200, 'y');
    devices::legacy::put_serial(w, big);
    auto bytes = w.take();
    Reader r(view(bytes));
    EXPECT_FALSE(devices::legacy::get_serial(r));
}

TEST(LegacyState, CmosAndI8042RoundTrip) {
    legacy::Cmos a(256 << 20, 0, [] { return std::time_t(0); });
    out(a, 0, 0x0b);
    out(a, 1, 0x06);  // status B: binary, 24 h
    out(a, 0, 0x40);
    out(a, 1, 0x99);  // a spare byte
    Writer w;
    devices::legacy::put_cmos(w, a.save());
    legacy::I8042 k(nullptr);
    out(k, 4, 0x60);  // write command byte: the parameter is still to come
    devices::legacy::put_i8042(w, k.save());
    auto bytes = w.take();
    Reader r(view(bytes));
    auto cs = devices::legacy::get_cmos(r);
    auto ks = devices::legacy::get_i8042(r);
    ASSERT_TRUE(cs && ks);
    EXPECT_TRUE(r.at_end());

    legacy::Cmos b(256 << 20, 0, [] { return std::time_t(0); });
    ASSERT_TRUE(b.restore(*cs));
    EXPECT_EQ(in(b, 1), 0x99);  // index 0x40 was selected
    out(b, 0, 0x0b);
    EXPECT_EQ(in(b, 1), 0x06);
    cs->index = 200;
    EXPECT_FALSE(b.restore(*cs));

    legacy::I8042 k2(nullptr);
    ASSERT_TRUE(k2.restore(*ks));
    EXPECT_EQ(in(k2, 4) & 0x08, 0x08);  // a command is pending
    out(k2, 0, 0x21);
    out(k2, 4, 0x20);  // read command byte
    EXPECT_EQ(in(k2, 0), 0x21);
    ks->pending_command = 0xaa;  // self-test takes no parameter
    EXPECT_FALSE(k2.restore(*ks));
}

// ------------------------------------------------------------ virtio transport

// Saves `g`'s transport, encodes and decodes the state.
virtio::MmioTransportState round_trip(VirtioGuest& g) {
    Writer w;
    devices::virtio::put_transport(w, g.transport->save());
    auto bytes = w.take();
    Reader r(view(bytes));
    auto s = devices::virtio::get_transport(r);
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    EXPECT_TRUE(r.at_end());
    return s ? *s : virtio::MmioTransportState{};
}

TEST(TransportState, RestoredRngCarriesOnWhereTheOldOneStopped) {
    VirtioGuest g;
    ASSERT_TRUE(g.attach(std::make_unique<virtio::Rng>()));
    ASSERT_TRUE(g.start(16));
    g.add_chain(0, {{g.alloc(32), 32, true}});
    g.notify(0);
    ASSERT_TRUE(g.next_used(0));
    // A request the old device never saw (queued before the snapshot).
    uint64_t buf = g.alloc(48);
    g.add_chain(0, {{buf, 48, true}});
    auto state = round_trip(g);
    EXPECT_EQ(state.queues[0].next_used, 1);
    EXPECT_EQ(state.queues[0].next_avail, 1);

    // The same guest memory, a new transport and device.
    auto t = virtio::MmioTransport::create(*g.mem, *g.loop, std::make_unique<virtio::Rng>(), [&g] { ++g.interrupts; });
    ASSERT_TRUE(t);
    ASSERT_TRUE((*t)->restore(state));
    g.transport = *t;
    EXPECT_EQ(g.r32(virtio::mmio::kStatus), state.status);
    g.w32(virtio::mmio::kQueueSel, 0);
    EXPECT_EQ(g.r32(virtio::mmio::kQueueReady), 1u);
    g.run();  // the waiting request is served without a new notification
    auto u = g.next_used(0);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->second, 48u);
    EXPECT_EQ(g.used_idx(0), 2);
    g.add_chain(0, {{g.alloc(8), 8, true}});
    g.notify(0);
    EXPECT_TRUE(g.next_used(0));
    EXPECT_FALSE(g.failed());
}

// Found by fuzz/device_record_fuzz: a restored queue whose rings overlap
// (the device's used-ring writes keep moving the available index) kept the
// I/O thread serving the same ring forever. Now one notification serves at
// most a ring's worth. A hang is ended by the alarm and fails the test.
TEST(TransportState, OverlappingRingsDoNotKeepTheDeviceBusyForever) {
    const uint8_t record[] = {0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00,
                              0x00, 0x00, 0x10, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00,
                              0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                              0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, 0x00,
                              0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x01, 0x00,
                              0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc3,
                              0xfe, 0xff, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
    state::Reader r(std::string_view(reinterpret_cast<const char*>(record), sizeof record));
    auto s = devices::virtio::get_transport(r);
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_EXIT(
        {
            ::alarm(10);
            VirtioGuest g(1 << 20);
            if (!g.attach(std::make_unique<virtio::Rng>())) ::_exit(2);
            if (g.transport->restore(*s)) {
                g.w32(virtio::mmio::kQueueNotify, 0);
                g.run();
            }
            ::_exit(0);
        },
        ::testing::ExitedWithCode(0), "");
}

TEST(TransportState, RefusesStateThatDoesNotFitTheDeviceOrTheMemory) {
    VirtioGuest g;
    ASSERT_TRUE(g.attach(std::make_unique<virtio::Rng>()));
    ASSERT_TRUE(g.start(16));
    const auto good = round_trip(g);
    auto refused = [&](auto&& change, const std::string& why) {
        auto s = good;
        change(s);
        auto t = virtio::MmioTransport::create(*g.mem, *g.loop, std::make_unique<virtio::Rng>(), nullptr);
        EXPECT_TRUE(t);
        auto r = (*t)->restore(s);
        EXPECT_FALSE(r) << why;
        if (!r) {
            EXPECT_NE(r.error().message.find(why), std::string::npos) << r.error().message;
        }
        EXPECT_EQ((*t)->status(), 0u);  // nothing half-applied
    };
    const uint64_t ram = g.mem->size();
    refused([&](auto& s) { s.queues[0].desc_gpa = ram; }, "outside guest RAM");
    refused([&](auto& s) { s.queues[0].used_gpa = ram - 8; }, "outside guest RAM");
    refused([&](auto& s) { s.queues[0].avail_gpa = ~0ull - 1; }, "outside guest RAM");
    refused([](auto& s) { s.queues[0].size = 12; }, "not a power of 2");
    refused(
        [](auto& s) {
            s.queues[0].ready = false;
            s.queues[0].size = 4096;
        },
        "above the maximum");
    refused([](auto& s) { s.queues[0].desc_gpa += 8; }, "misaligned");
    refused([](auto& s) { s.queues.push_back({}); }, "queues");
    refused([](auto& s) { s.driver_features |= 1ull << 40; }, "never offered");
    refused([](auto& s) { s.device_id = virtio::kIdBlock; }, "device type");
    refused([](auto& s) { s.offered_features |= 1; }, "features");
    refused([](auto& s) { s.config = {1, 2, 3}; }, "configuration");
    refused([](auto& s) { s.status |= 0x20; }, "status");
    refused([](auto& s) { s.interrupt_status = 4; }, "interrupt");
    refused([](auto& s) { s.failed = true; }, "NEEDS_RESET");

    // A transport the guest already set up is not overwritten.
    auto again = g.transport->restore(good);
    EXPECT_FALSE(again);

    // The decoder bounds counts and lengths.
    Writer w;
    devices::virtio::put_transport(w, good);
    auto bytes = w.take();
    for (size_t cut : {size_t(3), size_t(50), bytes.size() - 1}) {
        std::vector<uint8_t> t(bytes.begin(), bytes.begin() + cut);
        Reader r(view(t));
        EXPECT_FALSE(devices::virtio::get_transport(r)) << cut;
    }
    auto many = good;
    many.queues.resize(17);
    Writer w2;
    devices::virtio::put_transport(w2, many);
    auto many_bytes = w2.take();
    Reader r2(view(many_bytes));
    EXPECT_FALSE(devices::virtio::get_transport(r2));
}

TEST(TransportState, BlockDeviceOfAnotherSizeIsRefused) {
    char path[] = "/tmp/vessel-state-disk.XXXXXX";
    int fd = ::mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
    ::close(fd);
    virtio::BlockConfig config;
    config.path = path;
    VirtioGuest g;
    ASSERT_TRUE(g.attach(std::move(*virtio::Block::open(config))));
    ASSERT_TRUE(g.start(16));
    auto state = round_trip(g);
    ASSERT_EQ(::truncate(path, 2 << 20), 0);
    auto t = virtio::MmioTransport::create(*g.mem, *g.loop, std::move(*virtio::Block::open(config)), nullptr);
    ASSERT_TRUE(t);
    auto r = (*t)->restore(state);
    ::unlink(path);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("virtio-blk: the device's configuration differs"), std::string::npos)
        << r.error().message;
}

TEST(TransportState, RestoredVsockTellsTheGuestItsConnectionsAreGone) {
    std::string uds = "/tmp/vessel-state-vsock-" + std::to_string(::getpid()) + ".sock";
    VirtioGuest g;
    ASSERT_TRUE(g.attach(std::move(*virtio::Vsock::create(virtio::VsockConfig{3, uds}))));
    ASSERT_TRUE(g.start(16));
    // The driver keeps buffers in the event queue.
    uint64_t event = g.alloc(8);
    std::memset(g.host(event, 8), 0xff, 8);
    g.add_chain(2, {{event, 8, true}});
    g.notify(2);
    EXPECT_FALSE(g.next_used(2));  // no event before a restore
    auto state = round_trip(g);
    g.transport.reset();

    auto t = virtio::MmioTransport::create(
        *g.mem, *g.loop, std::move(*virtio::Vsock::create(virtio::VsockConfig{3, uds})), [&g] { ++g.interrupts; });
    ASSERT_TRUE(t);
    ASSERT_TRUE((*t)->restore(state));
    g.transport = *t;
    int before = g.interrupts;
    g.run();
    auto u = g.next_used(2);
    ASSERT_TRUE(u);
    EXPECT_EQ(u->second, 4u);
    uint32_t id;
    std::memcpy(&id, g.host(event, 4), 4);
    EXPECT_EQ(id, virtio::kVsockEventTransportReset);
    EXPECT_GT(g.interrupts, before);
    EXPECT_FALSE(g.next_used(2));  // once
}

// ------------------------------------------------------------ machine kinds

class MachineKind : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() / ("vessel-kind-test-" + std::to_string(::getpid()));
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    // A state.bin holding only a config section.
    void write_config(const std::string& json) {
        state::Sections s;
        s[state::Section::kConfig] = std::vector<uint8_t>(json.begin(), json.end());
        ASSERT_TRUE(state::write_state_file((dir_ / "state.bin").string(), s));
    }
    fs::path dir_;
};

TEST_F(MachineKind, EachRestorePathRefusesTheOtherKindInOneLine) {
    write_config(R"({"kind": "full", "cpus": 1})");
    auto thin = machine::ThinVm::restore(dir_.string());
    ASSERT_FALSE(thin);
    EXPECT_NE(thin.error().message.find("this is a snapshot of a full machine, not of a thin VM"), std::string::npos)
        << thin.error().message;
    EXPECT_EQ(thin.error().message.find('\n'), std::string::npos);

    write_config(R"({"program": "/bin/true", "argv": []})");  // thin snapshots before `kind` existed
    auto full = machine::FullVm::restore(dir_.string(), {});
    ASSERT_FALSE(full);
    EXPECT_NE(full.error().message.find("this is a snapshot of a thin VM, not of a full machine"), std::string::npos)
        << full.error().message;
    write_config(R"({"kind": "thin"})");
    EXPECT_FALSE(machine::FullVm::restore(dir_.string(), {}));
    write_config(R"({"kind": "quantum"})");
    auto odd = machine::FullVm::restore(dir_.string(), {});
    ASSERT_FALSE(odd);
    EXPECT_NE(odd.error().message.find("unknown machine kind"), std::string::npos) << odd.error().message;
}

}  // namespace
}  // namespace vessel

namespace vessel::machine {
namespace {

// A snapshot's config carries numbers a hostile file may write as floats,
// negatives or strings: each is refused with a message (nlohmann's
// get<uint64_t>() converted them, a huge float with undefined behaviour:
// found by fuzz/thin_snapshot).
TEST(ThinSnapshotConfig, NumbersMustBeUnsignedIntegers) {
    nlohmann::json good = {{"program", "/bin/true"}, {"argv", {"true"}}, {"envp", nlohmann::json::array()},
                           {"mem_bytes", 64 << 20},  {"root", "/"},      {"rw", nlohmann::json::array()}};
    ASSERT_TRUE(config_from_json(good).has_value());
    for (nlohmann::json bad : {nlohmann::json(6.71088e70), nlohmann::json(-1), nlohmann::json("64M"),
                               nlohmann::json(1.5), nlohmann::json(nullptr)}) {
        nlohmann::json j = good;
        j["mem_bytes"] = bad;
        auto c = config_from_json(j);
        ASSERT_FALSE(c.has_value()) << bad.dump();
        EXPECT_NE(c.error().message.find("mem_bytes"), std::string::npos) << c.error().message;
    }
}

// The guest's credentials travel with the snapshot; ids must fit 32 bits.
TEST(ThinSnapshotConfig, GuestCredentialsAreKeptAndChecked) {
    nlohmann::json j = {{"program", "/bin/true"},
                        {"argv", {"true"}},
                        {"envp", nlohmann::json::array()},
                        {"mem_bytes", 64 << 20},
                        {"root", "/"},
                        {"rw", nlohmann::json::array()},
                        {"uid", 1234},
                        {"gid", 5678}};
    auto c = config_from_json(j);
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->uid, 1234u);
    EXPECT_EQ(c->gid, 5678u);
    j["uid"] = 1ull << 32;
    EXPECT_FALSE(config_from_json(j));
    j.erase("uid");
    j.erase("gid");
    c = config_from_json(j);  // an older snapshot: the restoring user's
    ASSERT_TRUE(c);
    EXPECT_FALSE(c->uid.has_value());
}

}  // namespace
}  // namespace vessel::machine
