// Snapshots of thin VMs: capture to a directory and restore from one.
//
// A snapshot directory holds state.bin (the checksummed sections of
// state/format.h) and memory.img, a sparse image of guest-physical memory:
// byte N of the file is guest-physical address N, for RAM and for the
// program-image regions above it. Restore maps memory.img copy-on-write, so
// its cost does not grow with the memory size. A diff snapshot's memory.img
// holds only the pages written since its parent; restore applies the chain.
// What full machines share with this (the directory, memory images, chains,
// the vCPU record) lives in snapshot_dir.* and cpu/vcpu_state.*.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "arch/x86/x86.h"
#include "cpu/vcpu_state.h"
#include "machine/exit_status.h"
#include "machine/snapshot_dir.h"
#include "machine/thin_snapshot.h"
#include "machine/thin_vm_impl.h"
#include "memory/address_space_state.h"
#include "state/format.h"
#include "thin/guest_entry.h"
#include "thin/process_state.h"

namespace vessel::machine {
namespace {

using json = nlohmann::json;
using snapshot::view;
using state::Reader;
using state::Section;
using state::Writer;

const std::vector<Section> kThinSections = {Section::kConfig, Section::kVcpu, Section::kThinProcess,
                                            Section::kAddressSpace, Section::kMemory};

}  // namespace

// ------------------------------------------------------------ encoding

Result<ThinVmConfig> config_from_json(const json& j) {
    try {
        ThinVmConfig c;
        c.program = j.at("program").get<std::string>();
        c.argv = j.at("argv").get<std::vector<std::string>>();
        c.envp = j.at("envp").get<std::vector<std::string>>();
        c.mem_size = snapshot::json_unsigned(j, "mem_bytes");
        c.root = j.at("root").get<std::string>();
        for (const auto& m : j.at("rw"))
            c.rw.push_back({m.at("host").get<std::string>(), m.at("guest").get<std::string>()});
        c.trace_syscalls = j.value("trace_syscalls", false);
        // The guest's credentials (older snapshots: the restoring user's).
        for (auto [key, id] : {std::pair{"uid", &c.uid}, std::pair{"gid", &c.gid}}) {
            if (!j.contains(key)) continue;
            const uint64_t v = snapshot::json_unsigned(j, key);
            if (v > UINT32_MAX) throw std::domain_error(std::string("'") + key + "' is out of range");
            *id = static_cast<uint32_t>(v);
        }
        return c;
    } catch (const std::exception& e) {  // json::exception, and json_unsigned's
        return fail(std::string("snapshot config: ") + e.what(), EINVAL);
    }
}

// ------------------------------------------------------------ capture

Result<> ThinVm::Impl::start_dirty_logging() {
    if (!dirty_logging) {
        if (auto r = register_memory(KVM_MEM_LOG_DIRTY_PAGES); !r) return r;
        mem->start_dirty_tracking();
        dirty_logging = true;
    }
    auto pages = snapshot::collect_dirty_pages(*vm, *mem);  // clears KVM's logs and ours
    if (!pages) return std::unexpected(pages.error());
    return {};
}

Result<SnapshotInfo> ThinVm::Impl::write_snapshot(const SnapshotTarget& target, SnapshotType type) {
    if (type == SnapshotType::kDiff && last_snapshot.empty())
        return fail("no earlier snapshot of this VM to build a diff on; take a full snapshot first", EINVAL);
    auto ps = process->capture();
    if (!ps) return std::unexpected(ps.error());
    // Until commit(), a failure leaves nothing half-written (snapshot_dir.h).
    auto out = snapshot::open_output(target);
    if (!out) return std::unexpected(out.error());
    const std::string& dir = out->dir();

    auto vcpu_state = cpu::capture_vcpu(*this->vcpu, cpu::kThinVcpuMsrs, nullptr);
    if (!vcpu_state) return std::unexpected(vcpu_state.error());
    Writer vcpu_w, proc_w, as_w, mem_w;
    cpu::put_vcpu(vcpu_w, *vcpu_state);
    thin::put_process(proc_w, *ps);
    memory::put_address_space(as_w, *as);

    SnapshotInfo info;
    info.path = dir;
    auto written = snapshot::write_memory_image(out->memory(), *vm, *mem, type, last_snapshot, dirty_logging, info);
    if (!written) return std::unexpected(written.error());
    const snapshot::MemoryLayout& layout = *written;
    snapshot::put_memory(mem_w, layout);

    json cfg = {{"kind", "thin"},
                {"program", config.program},
                {"argv", config.argv},
                {"envp", config.envp},
                {"mem_bytes", mem->size()},
                {"root", config.root},
                {"rw", json::array()},
                {"trace_syscalls", config.trace_syscalls},
                {"uid", config.uid.value_or(::getuid())},
                {"gid", config.gid.value_or(::getgid())},
                {"snapshot", snapshot::metadata(layout)}};
    for (const auto& m : config.rw) cfg["rw"].push_back({{"host", m.host_dir}, {"guest", m.guest_path}});
    std::string cfg_text = cfg.dump(2);
    state::Sections sections;
    sections[Section::kConfig] = std::vector<uint8_t>(cfg_text.begin(), cfg_text.end());
    sections[Section::kVcpu] = vcpu_w.take();
    sections[Section::kThinProcess] = proc_w.take();
    sections[Section::kAddressSpace] = as_w.take();
    sections[Section::kMemory] = mem_w.take();
    if (auto r = out->write_state(sections); !r) return std::unexpected(r.error());
    if (auto r = out->commit(); !r) return std::unexpected(r.error());

    if (auto r = start_dirty_logging(); !r) return std::unexpected(r.error());
    last_snapshot = dir;
    return info;
}

// ------------------------------------------------------------ restore

Result<std::unique_ptr<ThinVm>> ThinVm::restore(const std::string& dir, const std::string& kvm_path) {
    std::unique_ptr<ThinVm> self(new ThinVm());  // first, so its timer covers reading the files
    Impl& m = *self->impl_;
    auto chain = snapshot::load_chain(dir, MachineKind::kThin, kThinSections);
    if (!chain) return std::unexpected(chain.error());
    const snapshot::Loaded& newest = chain->front();
    const snapshot::MemoryLayout& layout = newest.memory;
    if (layout.ram_size < kPoolStart) return fail(newest.dir + ": memory layout is malformed", EINVAL);

    auto config = config_from_json(newest.config);
    if (!config) return wrap(newest.dir, config.error());
    config->kvm_path = kvm_path;
    if (config->mem_size != layout.ram_size)
        return fail(newest.dir + ": memory size disagrees with the layout", EINVAL);

    m.config = *config;

    auto mem = snapshot::map_chain(*chain);
    if (!mem) return std::unexpected(mem.error());
    m.mem = std::make_unique<memory::GuestMemory>(std::move(*mem));
    m.timer.mark("read state, map memory");

    auto sandbox = thin::Sandbox::create(config->root, config->rw);
    if (!sandbox) return wrap("restore", sandbox.error());
    if (auto r = m.open_kvm(); !r) return std::unexpected(r.error());
    // Dirty logging from the start: the next snapshot may be a diff on this one.
    if (auto r = m.register_memory(KVM_MEM_LOG_DIRTY_PAGES); !r) return std::unexpected(r.error());
    m.dirty_logging = true;
    m.mem->start_dirty_tracking();
    m.as = std::make_unique<memory::AddressSpace>(*m.mem, kPoolStart);
    if (auto r = memory::get_address_space(Reader(view(newest.sections.at(Section::kAddressSpace))), *m.as, *m.mem,
                                           kPoolStart);
        !r)
        return wrap(newest.dir, r.error());
    auto ps = thin::get_process(Reader(view(newest.sections.at(Section::kThinProcess))));
    if (!ps) return wrap(newest.dir, ps.error());

    // The CPUID the program started with (its glibc chose its routines by
    // it), for un-rewritten sites too; a snapshot without the page gets
    // this host's.
    std::vector<arch::x86::CpuidAnswer> answers = thin::GuestEntry::cpuid_answers(*m.as);
    if (answers.empty()) answers = host_cpuid_answers();
    auto cpuid = m.create_vcpu(answers);
    if (!cpuid) return std::unexpected(cpuid.error());
    Reader r(view(newest.sections.at(Section::kVcpu)));
    auto vcpu_state = cpu::get_vcpu(r, cpu::kThinVcpuMsrs, false);
    if (!vcpu_state) return wrap(newest.dir, vcpu_state.error());
    if (!r.at_end()) return fail(newest.dir + ": vCPU state is malformed", EINVAL);
    if (auto res = cpu::apply_vcpu(*m.vcpu, *vcpu_state); !res) return wrap(newest.dir, res.error());
    m.timer.mark("vcpu state");

    m.finish_setup(std::move(*sandbox), vcpu_state->sregs.cr4 & arch::x86::cr4::kFSGSBASE);
    if (auto res = m.process->restore(*ps); !res) return std::unexpected(res.error());
    m.restored_from = newest.dir;
    m.last_snapshot = newest.dir;
    m.timer.mark("process state");
    return self;
}

}  // namespace vessel::machine
