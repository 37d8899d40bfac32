// Snapshots of thin VMs: capture to a directory and restore from one.
//
// A snapshot directory holds state.bin (the checksummed sections of
// state/format.h) and memory.img, a sparse image of guest-physical memory:
// byte N of the file is guest-physical address N, for RAM and for the
// program-image regions above it. Restore maps memory.img copy-on-write, so
// its cost does not grow with the memory size. A diff snapshot's memory.img
// holds only the pages written since its parent; restore applies the chain.
// What full machines share with this (the directory, memory images, chains,
// the vCPU record) lives in snapshot_dir.* and vcpu_snapshot.*.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "arch/x86/x86.h"
#include "machine/exit_status.h"
#include "machine/snapshot_dir.h"
#include "machine/thin_snapshot.h"
#include "machine/thin_vm_impl.h"
#include "machine/vcpu_snapshot.h"
#include "state/format.h"
#include "thin/guest_entry.h"

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

void put_process(Writer& w, const thin::ProcessSnapshot& s) {
    w.str(s.cwd);
    w.u64(s.brk_start);
    w.u64(s.brk);
    w.u32(s.umask);
    w.u64(s.clear_child_tid);
    w.u64(s.signal_mask);
    w.bytes(s.sigactions.data(), sizeof s.sigactions);
    w.bytes(s.sigaltstack.data(), sizeof s.sigaltstack);
    w.u32(static_cast<uint32_t>(s.files.size()));
    for (const auto& f : s.files) {
        w.u8(f.kind);
        w.u32(static_cast<uint32_t>(f.stdio));
        w.str(f.guest_path);
        w.u32(static_cast<uint32_t>(f.flags));
        w.i64(f.offset);
        w.u8(f.directory);
    }
    w.u32(static_cast<uint32_t>(s.descriptors.size()));
    for (const auto& d : s.descriptors) {
        w.u32(static_cast<uint32_t>(d.fd));
        w.u32(d.file);
        w.u8(d.cloexec);
    }
}

Result<thin::ProcessSnapshot> get_process(Reader r) {
    thin::ProcessSnapshot s;
    s.cwd = r.str(4096);
    s.brk_start = r.u64();
    s.brk = r.u64();
    s.umask = r.u32();
    s.clear_child_tid = r.u64();
    s.signal_mask = r.u64();
    r.blob(s.sigactions.data(), sizeof s.sigactions);
    r.blob(s.sigaltstack.data(), sizeof s.sigaltstack);
    uint32_t nfiles = r.u32();
    if (nfiles > thin::FdTable::kMaxFds) return fail("process state: too many files", EINVAL);
    for (uint32_t i = 0; r.ok() && i < nfiles; ++i) {
        thin::ProcessSnapshot::File f;
        uint8_t kind = r.u8();
        if (kind > thin::ProcessSnapshot::File::kPath) r.fail();
        f.kind = static_cast<thin::ProcessSnapshot::File::Kind>(kind);
        f.stdio = static_cast<int>(r.u32());
        f.guest_path = r.str(4096);
        f.flags = static_cast<int>(r.u32());
        f.offset = r.i64();
        f.directory = r.u8() != 0;
        if (f.kind == thin::ProcessSnapshot::File::kPath && (f.guest_path.empty() || f.guest_path[0] != '/')) r.fail();
        s.files.push_back(std::move(f));
    }
    uint32_t nfds = r.u32();
    if (nfds > thin::FdTable::kMaxFds) return fail("process state: too many descriptors", EINVAL);
    for (uint32_t i = 0; r.ok() && i < nfds; ++i) {
        thin::ProcessSnapshot::Descriptor d;
        d.fd = static_cast<int>(r.u32());
        d.file = r.u32();
        d.cloexec = r.u8() != 0;
        if (d.fd < 0 || d.fd >= thin::FdTable::kMaxFds || d.file >= s.files.size()) r.fail();
        s.descriptors.push_back(d);
    }
    if (!r.ok() || !r.at_end() || s.cwd.empty() || s.cwd[0] != '/') return fail("process state is malformed", EINVAL);
    return s;
}

void put_address_space(Writer& w, memory::AddressSpace& as) {
    w.u64(as.tables().root());
    w.u64(as.allocator().next());
    w.u64(as.allocator().end());
    const auto& free_list = as.allocator().free_list();
    w.u64(free_list.size());
    for (uint64_t p : free_list) w.u64(p);
    w.u64(as.vmas().size());
    for (const auto& [start, v] : as.vmas()) {
        w.u64(v.start);
        w.u64(v.end);
        w.u32(static_cast<uint32_t>(v.prot));
        w.str(v.name);
    }
}

Result<> get_address_space(Reader r, memory::AddressSpace& as, const memory::GuestMemory& mem) {
    auto bad = [] { return fail("address-space state is malformed", EINVAL); };
    uint64_t root = r.u64(), next = r.u64(), end = r.u64();
    if (root & memory::kPageMask || !mem.contains(root, memory::kPageSize)) return bad();
    if (next < kPoolStart || next > end || end > mem.size() || (next | end) & memory::kPageMask) return bad();
    uint64_t nfree = r.u64();
    if (nfree > mem.size() / memory::kPageSize) return bad();
    std::vector<uint64_t> free_list(nfree);
    for (auto& p : free_list) {
        p = r.u64();
        if (p < kPoolStart || p >= next || p & memory::kPageMask) return bad();
    }
    uint64_t nvmas = r.u64();
    if (nvmas > (1u << 20)) return bad();
    std::map<uint64_t, memory::Vma> vmas;
    uint64_t last_end = 0;
    for (uint64_t i = 0; i < nvmas; ++i) {
        memory::Vma v;
        v.start = r.u64();
        v.end = r.u64();
        v.prot = static_cast<int>(r.u32());
        v.name = r.str(4096);
        if (!r.ok() || v.start >= v.end || (v.start | v.end) & memory::kPageMask || v.end > memory::kUserAddressEnd ||
            v.start < last_end || v.prot & ~7)
            return bad();
        last_end = v.end;
        vmas.emplace(v.start, std::move(v));
    }
    if (!r.ok() || !r.at_end()) return bad();
    as.tables().adopt(root);
    as.allocator().restore(next, end, std::move(free_list));
    as.restore_vmas(std::move(vmas));
    return {};
}

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

    auto vcpu_state = capture_vcpu(*this->vcpu, kThinVcpuMsrs, nullptr);
    if (!vcpu_state) return std::unexpected(vcpu_state.error());
    Writer vcpu_w, proc_w, as_w, mem_w;
    put_vcpu(vcpu_w, *vcpu_state);
    put_process(proc_w, *ps);
    put_address_space(as_w, *as);

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
    if (auto r = get_address_space(Reader(view(newest.sections.at(Section::kAddressSpace))), *m.as, *m.mem); !r)
        return wrap(newest.dir, r.error());
    auto ps = get_process(Reader(view(newest.sections.at(Section::kThinProcess))));
    if (!ps) return wrap(newest.dir, ps.error());

    // The CPUID the program started with (its glibc chose its routines by
    // it), for un-rewritten sites too; a snapshot without the page gets
    // this host's.
    std::vector<arch::x86::CpuidAnswer> answers = thin::GuestEntry::cpuid_answers(*m.as);
    if (answers.empty()) answers = host_cpuid_answers();
    auto cpuid = m.create_vcpu(answers);
    if (!cpuid) return std::unexpected(cpuid.error());
    Reader r(view(newest.sections.at(Section::kVcpu)));
    auto vcpu_state = get_vcpu(r, kThinVcpuMsrs, false);
    if (!vcpu_state) return wrap(newest.dir, vcpu_state.error());
    if (!r.at_end()) return fail(newest.dir + ": vCPU state is malformed", EINVAL);
    if (auto res = apply_vcpu(*m.vcpu, *vcpu_state); !res) return wrap(newest.dir, res.error());
    m.timer.mark("vcpu state");

    m.finish_setup(std::move(*sandbox), vcpu_state->sregs.cr4 & arch::x86::cr4::kFSGSBASE);
    if (auto res = m.process->restore(*ps); !res) return std::unexpected(res.error());
    m.restored_from = newest.dir;
    m.last_snapshot = newest.dir;
    m.timer.mark("process state");
    return self;
}

}  // namespace vessel::machine
