// Full machines' snapshot records as sections and back (full_snapshot.h).
// The directory and memory image are those of thin snapshots
// (snapshot_dir.*); each vCPU is the shared vCPU record (cpu/vcpu_state.*)
// with the full machine's part: LAPIC, MP state, debug registers, CPUID.
#include "machine/full_snapshot.h"

#include <fcntl.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>

#include "arch/x86/cpuid.h"
#include "arch/x86/mptable.h"
#include "base/fd.h"
#include "devices/legacy/persist.h"
#include "devices/virtio/blk.h"
#include "devices/virtio/persist.h"

namespace vessel::machine {
namespace {

using json = nlohmann::json;
using snapshot::view;
using state::Reader;
using state::Section;
using state::Writer;
namespace virtio = devices::virtio;
namespace x86 = arch::x86;

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

Result<FullVmRecord> config_from_json(const json& j) {
    try {
        FullVmRecord r;
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

// Section 6: the count, then each vCPU's index and record.
Result<std::vector<cpu::VcpuState>> get_vcpus(Reader r, unsigned cpus) {
    uint32_t n = r.u32();
    if (!r.ok() || n != cpus)
        return fail("the snapshot has " + std::to_string(n) + " vCPU records for " + std::to_string(cpus) + " vCPUs",
                    EINVAL);
    std::vector<cpu::VcpuState> states;
    for (uint32_t i = 0; i < n; ++i) {
        if (r.u32() != i) return fail("vCPU records out of order", EINVAL);
        auto s = cpu::get_vcpu(r, cpu::kFullVcpuMsrs, true);
        if (!s) return wrap("vCPU " + std::to_string(i), s.error());
        states.push_back(std::move(*s));
    }
    if (!r.at_end()) return fail("vCPU state is malformed", EINVAL);
    return states;
}

// Section 8: serial, CMOS, i8042, then the count and each transport.
Result<> get_devices(Reader r, FullVmRecord& d) {
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
    return {};
}

}  // namespace

const std::vector<Section> kFullSections = {Section::kConfig, Section::kVcpus, Section::kMachine, Section::kDevices,
                                            Section::kMemory};

json full_config_json(const FullVmRecord& m) {
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
        net = {{"spec", *c.net}, {"tap", spec ? spec->tap : std::string()}, {"mac", m.mac ? mac_text(*m.mac) : ""}};
    }
    json vsock = nullptr;
    if (c.vsock_cid) vsock = {{"cid", *c.vsock_cid}, {"uds", c.vsock_uds}};
    return {{"kind", "full"},
            {"kernel", c.kernel},
            {"initrd", c.initrd},
            {"cmdline", c.cmdline},
            {"kernel_cmdline", m.kernel_cmdline},
            {"boot_entry", entry_name(c.entry)},
            {"cpus", c.cpus},
            {"mem_bytes", c.mem_size},
            {"devices", {{"disks", disks}, {"net", net}, {"vsock", vsock}, {"rng", c.rng}}}};
}

state::Sections full_records(const FullVmRecord& m) {
    Writer vcpus_w, machine_w, devices_w;
    vcpus_w.u32(static_cast<uint32_t>(m.vcpus.size()));
    for (size_t i = 0; i < m.vcpus.size(); ++i) {
        vcpus_w.u32(static_cast<uint32_t>(i));
        cpu::put_vcpu(vcpus_w, m.vcpus[i]);
    }
    put_kvm_devices(machine_w, m.chips);
    devices::legacy::put_serial(devices_w, m.serial);
    devices::legacy::put_cmos(devices_w, m.cmos);
    devices::legacy::put_i8042(devices_w, m.i8042);
    devices_w.u32(static_cast<uint32_t>(m.transports.size()));
    for (const auto& t : m.transports) devices::virtio::put_transport(devices_w, t);
    state::Sections s;
    s[Section::kVcpus] = vcpus_w.take();
    s[Section::kMachine] = machine_w.take();
    s[Section::kDevices] = devices_w.take();
    return s;
}

Result<FullVmRecord> decode_full_snapshot(const snapshot::Loaded& newest) {
    const std::string& where = newest.dir;
    auto record = config_from_json(newest.config);
    if (!record) return wrap(where, record.error());
    const FullVmConfig& config = record->config;
    if (!newest.memory.regions.empty() || config.mem_size != newest.memory.ram_size)
        return fail(where + ": memory size disagrees with the layout", EINVAL);
    if (config.disks.size() != record->disk_sectors.size())
        return fail(where + ": snapshot config is malformed", EINVAL);
    for (size_t i = 0; i < config.disks.size(); ++i)
        if (auto r = check_disk(config.disks[i], record->disk_sectors[i]); !r) return std::unexpected(r.error());

    auto vcpus = get_vcpus(Reader(view(newest.sections.at(Section::kVcpus))), config.cpus);
    if (!vcpus) return wrap(where, vcpus.error());
    record->vcpus = std::move(*vcpus);
    Reader mr(view(newest.sections.at(Section::kMachine)));
    auto chips = get_kvm_devices(mr);
    if (!chips) return wrap(where, chips.error());
    if (!mr.at_end()) return fail(where + ": in-kernel device state is malformed", EINVAL);
    record->chips = *chips;
    if (auto r = get_devices(Reader(view(newest.sections.at(Section::kDevices))), *record); !r)
        return wrap(where, r.error());
    return record;
}

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

}  // namespace vessel::machine
