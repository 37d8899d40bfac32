// Snapshots of full machines: capture a paused machine to a directory and
// rebuild one from it (docs/snapshot-format.md, "Full machines").
//
// The directory and memory image are those of thin snapshots (snapshot_dir.*),
// and each vCPU is the shared vCPU record (cpu/vcpu_state.*) with the full
// machine's part: LAPIC, MP state, debug registers, CPUID. Sections 6-8 add
// what a thin VM lacks: all the vCPUs, KVM's in-kernel devices and clock,
// and the VMM's devices.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "arch/x86/cpuid.h"
#include "arch/x86/mptable.h"
#include "base/fd.h"
#include "cpu/vcpu_state.h"
#include "devices/legacy/persist.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/persist.h"
#include "machine/full_vm_impl.h"
#include "machine/kvm_chips_state.h"
#include "machine/snapshot_dir.h"
#include "state/format.h"

namespace vessel::machine {
namespace {

using json = nlohmann::json;
using state::Reader;
using state::Section;
using state::Writer;
namespace virtio = devices::virtio;
namespace x86 = arch::x86;

const std::vector<Section> kFullSections = {Section::kConfig, Section::kVcpus, Section::kMachine, Section::kDevices,
                                            Section::kMemory};

const char* entry_name(BootEntry e) {
    switch (e) {
        case BootEntry::kAuto: return "auto";
        case BootEntry::kPvh: return "pvh";
        case BootEntry::kLinux64: return "linux64";
    }
    return "auto";
}

std::string mac_text(const virtio::MacAddress& m) {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return buf;
}

// The configuration a snapshot records, and what restore checks against.
struct Recorded {
    FullVmConfig config;
    std::string kernel_cmdline;  // final, with the virtio-mmio entries
    std::vector<uint64_t> disk_sectors;
    std::optional<virtio::MacAddress> mac;
};

json config_json(const FullVm::Impl& m, const snapshot::MemoryLayout& layout) {
    const FullVmConfig& c = m.config;
    json disks = json::array();
    for (size_t i = 0; i < c.disks.size(); ++i) {
        auto spec = virtio::parse_disk_spec(c.disks[i]);
        disks.push_back({{"spec", c.disks[i]},
                         {"path", spec ? spec->path : std::string()},
                         {"read_only", spec && spec->read_only},
                         {"sectors", i < m.disk_sectors.size() ? m.disk_sectors[i] : 0}});
    }
    json net = nullptr;
    if (c.net) {
        auto spec = virtio::parse_net_spec(*c.net);
        net = {{"spec", *c.net},
               {"tap", spec ? spec->tap : std::string()},
               {"mac", m.net_mac ? mac_text(*m.net_mac) : ""}};
    }
    json vsock = nullptr;
    if (c.vsock_cid) vsock = {{"cid", *c.vsock_cid}, {"uds", c.vsock_uds}};
    return {{"kind", "full"},
            {"kernel", c.kernel},
            {"initrd", c.initrd},
            {"cmdline", c.cmdline},
            {"kernel_cmdline", m.cmdline},
            {"boot_entry", entry_name(c.entry)},
            {"cpus", c.cpus},
            {"mem_bytes", c.mem_size},
            {"devices", {{"disks", disks}, {"net", net}, {"vsock", vsock}, {"rng", c.rng}}},
            {"snapshot", snapshot::metadata(layout)}};
}

Result<Recorded> config_from_json(const json& j) {
    try {
        Recorded r;
        FullVmConfig& c = r.config;
        c.kernel = j.at("kernel").get<std::string>();
        c.initrd = j.at("initrd").get<std::string>();
        c.cmdline = j.at("cmdline").get<std::string>();
        r.kernel_cmdline = j.at("kernel_cmdline").get<std::string>();
        std::string entry = j.at("boot_entry").get<std::string>();
        c.entry = entry == "pvh" ? BootEntry::kPvh : entry == "linux64" ? BootEntry::kLinux64 : BootEntry::kAuto;
        uint64_t cpus = snapshot::json_unsigned(j, "cpus");
        if (cpus == 0 || cpus > kMaxFullVmCpus)
            return fail("snapshot config: cpus out of range: a machine for " + std::to_string(cpus) + " vCPUs (1 to " +
                            std::to_string(kMaxFullVmCpus) + ")",
                        EINVAL);
        c.cpus = static_cast<unsigned>(cpus);
        c.mem_size = snapshot::json_unsigned(j, "mem_bytes");
        const json& d = j.at("devices");
        for (const auto& disk : d.at("disks")) {
            c.disks.push_back(disk.at("spec").get<std::string>());
            r.disk_sectors.push_back(snapshot::json_unsigned(disk, "sectors"));
        }
        if (!d.at("net").is_null()) {
            c.net = d.at("net").at("spec").get<std::string>();
            auto mac = virtio::parse_mac(d.at("net").at("mac").get<std::string>());
            if (!mac) return fail("snapshot config: bad MAC address", EINVAL);
            r.mac = *mac;
        }
        if (!d.at("vsock").is_null()) {
            uint64_t cid = snapshot::json_unsigned(d.at("vsock"), "cid");
            if (cid < 3 || cid > 0xffffffffull) return fail("snapshot config: vsock CID out of range", EINVAL);
            c.vsock_cid = static_cast<uint32_t>(cid);
            c.vsock_uds = d.at("vsock").at("uds").get<std::string>();
        }
        c.rng = d.at("rng").get<bool>();
        return r;
    } catch (const std::exception& e) {  // json::exception, and json_unsigned's
        return fail(std::string("snapshot config: ") + e.what(), EINVAL);
    }
}

// A disk must be the one the guest knew: present and the same size.
Result<> check_disk(const std::string& spec_text, uint64_t sectors) {
    auto spec = virtio::parse_disk_spec(spec_text);
    if (!spec) return fail("snapshot config: disk '" + spec_text + "': " + spec.error().message, EINVAL);
    Fd fd(::open(spec->path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        if (errno == ENOENT) return fail("disk " + spec->path + " of the snapshot is missing", ENOENT);
        return fail_errno("disk " + spec->path);
    }
    off_t end = ::lseek(fd.get(), 0, SEEK_END);
    if (end < 0) return fail_errno("disk " + spec->path);
    if (uint64_t(end) / virtio::kSectorSize != sectors)
        return fail("disk " + spec->path + " changed size since the snapshot (" +
                        std::to_string(sectors * virtio::kSectorSize) + " bytes then, " + std::to_string(end) +
                        " now); refusing to restore",
                    EINVAL);
    return {};
}

// The snapshot's vCPU may use only CPU features this host's KVM offers
// (restoring on another CPU model would fault in the guest, or worse).
Result<> check_cpuid(const std::vector<kvm_cpuid_entry2>& saved, const std::vector<kvm_cpuid_entry2>& host) {
    struct Reg {
        uint32_t function, index;
        uint32_t kvm_cpuid_entry2::*reg;
        const char* name;
        uint32_t dynamic;  // bits that follow guest state (OSXSAVE, APIC enable, OSPKE)
    };
    const Reg regs[] = {
        {1, 0, &kvm_cpuid_entry2::ecx, "ecx", 1u << 27},   {1, 0, &kvm_cpuid_entry2::edx, "edx", 1u << 9},
        {7, 0, &kvm_cpuid_entry2::ebx, "ebx", 0},          {7, 0, &kvm_cpuid_entry2::ecx, "ecx", 1u << 4},
        {7, 0, &kvm_cpuid_entry2::edx, "edx", 0},          {0xd, 0, &kvm_cpuid_entry2::eax, "eax", 0},
        {0x80000001, 0, &kvm_cpuid_entry2::ecx, "ecx", 0}, {0x80000001, 0, &kvm_cpuid_entry2::edx, "edx", 0},
    };
    for (const auto& r : regs) {
        const kvm_cpuid_entry2* s = x86::find_cpuid(saved, r.function, r.index);
        if (!s) continue;
        const kvm_cpuid_entry2* h = x86::find_cpuid(host, r.function, r.index);
        uint32_t extra = (s->*r.reg) & ~(h ? h->*r.reg : 0) & ~r.dynamic;
        if (extra) {
            char buf[160];
            std::snprintf(buf, sizeof buf, "CPUID leaf 0x%" PRIx32 ".%" PRIu32 " %s bits 0x%08" PRIx32, r.function,
                          r.index, r.name, extra);
            return fail(std::string("the snapshot's vCPUs use CPU features this host does not offer (") + buf +
                            "); restore it on a host with the same CPU",
                        EINVAL);
        }
    }
    return {};
}

struct DeviceStates {
    devices::legacy::SerialState serial;
    devices::legacy::CmosState cmos;
    devices::legacy::I8042State i8042;
    std::vector<virtio::MmioTransportState> transports;
};

Result<DeviceStates> get_devices(Reader r) {
    DeviceStates d;
    auto serial = devices::legacy::get_serial(r);
    if (!serial) return std::unexpected(serial.error());
    d.serial = std::move(*serial);
    auto cmos = devices::legacy::get_cmos(r);
    if (!cmos) return std::unexpected(cmos.error());
    d.cmos = *cmos;
    auto i8042 = devices::legacy::get_i8042(r);
    if (!i8042) return std::unexpected(i8042.error());
    d.i8042 = *i8042;
    uint32_t n = r.u32();
    if (!r.ok() || n > x86::kIoApicPins) return fail("device state is malformed", EINVAL);
    for (uint32_t i = 0; i < n; ++i) {
        auto t = devices::virtio::get_transport(r);
        if (!t) return std::unexpected(t.error());
        d.transports.push_back(std::move(*t));
    }
    if (!r.at_end()) return fail("device state is malformed", EINVAL);
    return d;
}

}  // namespace

// ------------------------------------------------------------ capture

Result<> FullVm::Impl::start_dirty_logging() {
    if (!dirty_logging) {
        if (auto r = vm->set_user_memory_region(0, 0, mem->size(), mem->host_base(), KVM_MEM_LOG_DIRTY_PAGES); !r)
            return r;
        mem->start_dirty_tracking();
        dirty_logging = true;
    }
    auto pages = snapshot::collect_dirty_pages(*vm, *mem);  // clears KVM's logs and ours
    if (!pages) return std::unexpected(pages.error());
    return {};
}

Result<SnapshotInfo> FullVm::Impl::write_snapshot_files(const SnapshotTarget& target, SnapshotType type) {
    // Until commit(), a failure leaves nothing half-written (snapshot_dir.h).
    auto out = snapshot::open_output(target);
    if (!out) return std::unexpected(out.error());
    const std::string& dir = out->dir();

    // The machine's moment first (vCPUs, in-kernel devices and clock), then
    // memory, which nothing changes while the vCPUs and the I/O thread stand.
    Writer vcpus_w;
    vcpus_w.u32(static_cast<uint32_t>(cpus.size()));
    for (size_t i = 0; i < cpus.size(); ++i) {
        auto s = cpu::capture_vcpu(*cpus[i]->vcpu, cpu::kFullVcpuMsrs, &cpus[i]->cpuid);
        if (!s) return wrap("vCPU " + std::to_string(i), s.error());
        vcpus_w.u32(static_cast<uint32_t>(i));
        cpu::put_vcpu(vcpus_w, *s);
    }
    auto kvm_devices = capture_kvm_devices(*vm);
    if (!kvm_devices) return std::unexpected(kvm_devices.error());
    Writer machine_w, devices_w, mem_w;
    put_kvm_devices(machine_w, *kvm_devices);
    devices::legacy::put_serial(devices_w, serial->save());
    devices::legacy::put_cmos(devices_w, cmos->save());
    devices::legacy::put_i8042(devices_w, i8042->save());
    devices_w.u32(static_cast<uint32_t>(transports.size()));
    for (const auto& t : transports) devices::virtio::put_transport(devices_w, t->save());

    SnapshotInfo info;
    info.path = dir;
    auto written = snapshot::write_memory_image(out->memory(), *vm, *mem, type, last_snapshot, dirty_logging, info);
    if (!written) return std::unexpected(written.error());
    const snapshot::MemoryLayout& layout = *written;
    snapshot::put_memory(mem_w, layout);

    std::string cfg_text = config_json(*this, layout).dump(2);
    state::Sections sections;
    sections[Section::kConfig] = std::vector<uint8_t>(cfg_text.begin(), cfg_text.end());
    sections[Section::kVcpus] = vcpus_w.take();
    sections[Section::kMachine] = machine_w.take();
    sections[Section::kDevices] = devices_w.take();
    sections[Section::kMemory] = mem_w.take();
    if (auto r = out->write_state(sections); !r) return std::unexpected(r.error());
    if (auto r = out->commit(); !r) return std::unexpected(r.error());

    if (auto r = start_dirty_logging(); !r) return std::unexpected(r.error());
    last_snapshot = dir;
    return info;
}

Result<SnapshotInfo> FullVm::snapshot(const SnapshotTarget& target, SnapshotType type) {
    Impl& m = *impl_;
    std::lock_guard lock(m.control_mu);  // also keeps run() from stopping the I/O thread under us
    const VmState state = m.vcpus.state();
    if (state != VmState::kPaused || m.vcpus.stopping())
        return fail(std::string("VM is ") + (m.vcpus.stopping() ? "stopping" : to_string(state)) +
                        "; pause it before taking a snapshot",
                    EBUSY);
    if (type == SnapshotType::kDiff && m.last_snapshot.empty())
        return fail("no earlier snapshot of this VM to build a diff on; take a full snapshot first", EINVAL);
    // The I/O thread stands too: no device writes guest memory or moves a
    // queue while they are saved. Its fds keep their events for later.
    m.loop->stop();
    auto r = m.write_snapshot_files(target, type);
    auto restarted = m.start_loop();
    if (r && !restarted) return wrap("snapshot written, but the I/O thread did not restart", restarted.error());
    return r;
}

// ------------------------------------------------------------ restore

Result<std::unique_ptr<FullVm>> FullVm::restore(const std::string& dir, const ConsoleSpec& console,
                                                const std::string& kvm_path) {
    auto chain = snapshot::load_chain(dir, MachineKind::kFull, kFullSections);
    if (!chain) return std::unexpected(chain.error());
    const snapshot::Loaded& newest = chain->front();
    const std::string& where = newest.dir;
    auto recorded = config_from_json(newest.config);
    if (!recorded) return wrap(where, recorded.error());
    FullVmConfig config = recorded->config;
    config.console = console;
    config.kvm_path = kvm_path;
    if (!newest.memory.regions.empty() || config.mem_size != newest.memory.ram_size)
        return fail(where + ": memory size disagrees with the layout", EINVAL);
    if (config.disks.size() != recorded->disk_sectors.size())
        return fail(where + ": snapshot config is malformed", EINVAL);
    for (size_t i = 0; i < config.disks.size(); ++i)
        if (auto r = check_disk(config.disks[i], recorded->disk_sectors[i]); !r) return std::unexpected(r.error());

    // Decode everything before building anything.
    Reader vr(snapshot::view(newest.sections.at(Section::kVcpus)));
    uint32_t ncpus = vr.u32();
    if (!vr.ok() || ncpus != config.cpus)
        return fail(where + ": the snapshot has " + std::to_string(ncpus) + " vCPU records for " +
                        std::to_string(config.cpus) + " vCPUs",
                    EINVAL);
    std::vector<cpu::VcpuState> vcpu_states;
    for (uint32_t i = 0; i < ncpus; ++i) {
        if (vr.u32() != i) return fail(where + ": vCPU records out of order", EINVAL);
        auto s = cpu::get_vcpu(vr, cpu::kFullVcpuMsrs, true);
        if (!s) return wrap(where + ": vCPU " + std::to_string(i), s.error());
        vcpu_states.push_back(std::move(*s));
    }
    if (!vr.at_end()) return fail(where + ": vCPU state is malformed", EINVAL);
    Reader mr(snapshot::view(newest.sections.at(Section::kMachine)));
    auto kvm_devices = get_kvm_devices(mr);
    if (!kvm_devices) return wrap(where, kvm_devices.error());
    if (!mr.at_end()) return fail(where + ": in-kernel device state is malformed", EINVAL);
    auto device_states = get_devices(Reader(snapshot::view(newest.sections.at(Section::kDevices))));
    if (!device_states) return wrap(where, device_states.error());

    std::unique_ptr<FullVm> self(new FullVm());
    Impl& m = *self->impl_;
    m.config = config;
    m.cmdline = config.cmdline;
    m.net_mac = recorded->mac;
    if (auto r = m.open_machine(); !r) return wrap(where, r.error());
    auto mem = snapshot::map_chain(*chain);
    if (!mem) return std::unexpected(mem.error());
    // Dirty logging from the start: the next snapshot may be a diff on this one.
    if (auto r = m.attach_memory(std::move(*mem), KVM_MEM_LOG_DIRTY_PAGES); !r) return std::unexpected(r.error());
    m.mem->start_dirty_tracking();
    m.dirty_logging = true;
    if (auto r = m.setup_io(); !r) return std::unexpected(r.error());
    // Same devices, same order: the same MMIO windows and IRQs as the guest knows.
    if (m.cmdline != recorded->kernel_cmdline)
        return fail(where + ": the re-created devices do not match the snapshot's (command line \"" + m.cmdline +
                        "\", recorded \"" + recorded->kernel_cmdline + "\")",
                    EINVAL);
    if (device_states->transports.size() != m.transports.size())
        return fail(where + ": the snapshot has state for " + std::to_string(device_states->transports.size()) +
                        " virtio devices, the machine has " + std::to_string(m.transports.size()),
                    EINVAL);

    auto supported = m.system->supported_cpuid();
    if (!supported) return std::unexpected(supported.error());
    for (unsigned i = 0; i < config.cpus; ++i) {
        const cpu::VcpuState& s = vcpu_states[i];
        if (auto r = check_cpuid(s.machine->cpuid, x86::build_vcpu_cpuid(*supported, i, config.cpus)); !r)
            return wrap(where, r.error());
        auto c = m.add_cpu(i);
        if (!c) return std::unexpected(c.error());
        (*c)->cpuid = s.machine->cpuid;
        if (auto r = cpu::apply_vcpu(*(*c)->vcpu, s); !r) return wrap(where + ": vCPU " + std::to_string(i), r.error());
    }
    // After the vCPUs: the I/O APIC may deliver to their LAPICs at once.
    if (auto r = apply_kvm_devices(*m.vm, *kvm_devices); !r) return wrap(where, r.error());

    if (auto r = m.serial->restore(device_states->serial); !r) return wrap(where, r.error());
    if (auto r = m.cmos->restore(device_states->cmos); !r) return wrap(where, r.error());
    if (auto r = m.i8042->restore(device_states->i8042); !r) return wrap(where, r.error());
    for (size_t i = 0; i < m.transports.size(); ++i)
        if (auto r = m.transports[i]->restore(device_states->transports[i]); !r) return wrap(where, r.error());

    m.restored_from = newest.dir;
    m.last_snapshot = newest.dir;
    m.summary = "restored from " + newest.dir + ", " + std::to_string(m.mem->size() >> 20) + " MiB, " +
                std::to_string(config.cpus) + " vCPU" + (config.cpus > 1 ? "s" : "");
    return self;
}

}  // namespace vessel::machine
