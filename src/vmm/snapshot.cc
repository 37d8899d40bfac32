// Snapshots of thin VMs: capture to a directory and restore from one.
//
// A snapshot directory holds state.bin (the checksummed sections of
// state/format.h) and memory.img, a sparse image of guest-physical memory:
// byte N of the file is guest-physical address N, for RAM and for the
// program-image regions above it. Restore maps memory.img copy-on-write, so
// its cost does not grow with the memory size. A diff snapshot's memory.img
// holds only the pages written since its parent; restore applies the chain.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "arch/x86/x86.h"
#include "state/format.h"
#include "vmm/exit_status.h"
#include "vmm/thin_vm_impl.h"

namespace vessel::vmm {
namespace {

using json = nlohmann::json;
using state::Reader;
using state::Section;
using state::Writer;
namespace x86 = arch::x86;

constexpr const char* kStateFile = "state.bin";
constexpr const char* kMemoryFile = "memory.img";
constexpr unsigned kMaxChain = 64;
constexpr uint64_t kMaxRam = 64ull << 30;

// MSRs worth carrying for a user-mode guest; those KVM will not read are skipped.
const std::vector<uint32_t> kMsrs = {x86::msr::kTsc,     x86::msr::kStar,         x86::msr::kLstar,
                                     x86::msr::kCstar,   x86::msr::kSfmask,       x86::msr::kKernelGsBase,
                                     x86::msr::kPat,     x86::msr::kSysenterCs,   x86::msr::kSysenterEsp,
                                     x86::msr::kSysenterEip, x86::msr::kTscAux};

std::string absolute(const std::string& dir) {
    if (!dir.empty() && dir[0] == '/') return dir;
    char cwd[4096];
    return ::getcwd(cwd, sizeof cwd) ? std::string(cwd) + "/" + dir : dir;
}

Result<> pwrite_all(int fd, const void* data, uint64_t len, uint64_t off) {
    auto* p = static_cast<const uint8_t*>(data);
    while (len) {
        ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return fail_errno("write memory.img");
        p += n;
        off += static_cast<uint64_t>(n);
        len -= static_cast<uint64_t>(n);
    }
    return {};
}

// Data (non-hole) ranges of `fd` within [0, limit).
std::vector<std::pair<uint64_t, uint64_t>> data_ranges(int fd, uint64_t limit) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    off_t pos = 0;
    while (static_cast<uint64_t>(pos) < limit) {
        off_t data = ::lseek(fd, pos, SEEK_DATA);
        if (data < 0 || static_cast<uint64_t>(data) >= limit) break;
        off_t hole = ::lseek(fd, data, SEEK_HOLE);
        if (hole < 0) hole = static_cast<off_t>(limit);
        uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), limit);
        out.emplace_back(memory::page_align_down(static_cast<uint64_t>(data)), memory::page_align_up(end));
        pos = hole;
    }
    return out;
}

// ------------------------------------------------------------ encoding

void put_vcpu(Writer& w, kvm::Vcpu& vcpu, Result<>& err) {
    auto regs = vcpu.get_regs();
    auto sregs = vcpu.get_sregs();
    auto fpu = vcpu.get_fpu();
    auto xsave = vcpu.get_xsave();
    auto xcrs = vcpu.get_xcrs();
    auto events = vcpu.get_events();
    for (const Error* e : {regs ? nullptr : &regs.error(), sregs ? nullptr : &sregs.error(),
                           fpu ? nullptr : &fpu.error(), xsave ? nullptr : &xsave.error(),
                           xcrs ? nullptr : &xcrs.error(), events ? nullptr : &events.error()})
        if (e) {
            err = std::unexpected(*e);
            return;
        }
    w.bytes(&*regs, sizeof *regs);
    w.bytes(&*sregs, sizeof *sregs);
    w.bytes(&*fpu, sizeof *fpu);
    w.bytes(xsave->data(), xsave->size() * 4);
    w.bytes(&*xcrs, sizeof *xcrs);
    w.bytes(&*events, sizeof *events);
    std::vector<std::pair<uint32_t, uint64_t>> msrs;
    for (uint32_t index : kMsrs)
        if (auto v = vcpu.get_msrs({index})) msrs.emplace_back(index, (*v)[0]);
    w.u32(static_cast<uint32_t>(msrs.size()));
    for (auto [i, v] : msrs) {
        w.u32(i);
        w.u64(v);
    }
    w.u8(0);  // no in-kernel LAPIC in a thin VM
}

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

struct MemoryLayout {
    uint64_t ram_size = 0;
    std::vector<memory::GuestMemory::RegionSpec> regions;
    bool diff = false;
    std::string parent;
    std::vector<uint64_t> pages;  // diff: the pages memory.img holds
    uint64_t phys_end() const { return regions.empty() ? ram_size : regions.back().gpa + regions.back().size; }
};

void put_memory(Writer& w, const MemoryLayout& m) {
    w.u64(m.ram_size);
    w.u32(static_cast<uint32_t>(m.regions.size()));
    for (const auto& r : m.regions) {
        w.u64(r.gpa);
        w.u64(r.size);
    }
    w.u8(m.diff);
    w.str(m.parent);
    w.u64(m.pages.size());
    for (uint64_t p : m.pages) w.u64(p);
}

Result<MemoryLayout> get_memory(Reader r) {
    auto bad = [] { return fail("memory layout is malformed", EINVAL); };
    MemoryLayout m;
    m.ram_size = r.u64();
    if (m.ram_size < kPoolStart || m.ram_size > kMaxRam || m.ram_size & memory::kPageMask) return bad();
    uint32_t n = r.u32();
    if (n > 16) return bad();
    uint64_t end = m.ram_size;
    for (uint32_t i = 0; i < n; ++i) {
        memory::GuestMemory::RegionSpec s{r.u64(), r.u64()};
        if (s.gpa < end || s.size == 0 || s.size > (4ull << 30) || (s.gpa | s.size) & memory::kPageMask ||
            s.gpa > (1ull << 46))
            return bad();
        end = s.gpa + s.size;
        m.regions.push_back(s);
    }
    m.diff = r.u8() != 0;
    m.parent = r.str(4096);
    uint64_t npages = r.u64();
    if (npages > end / memory::kPageSize) return bad();
    uint64_t last = 0;
    for (uint64_t i = 0; i < npages; ++i) {
        uint64_t p = r.u64();
        if (p & memory::kPageMask || p >= end || (i && p <= last)) return bad();
        last = p;
        m.pages.push_back(p);
    }
    if (!r.ok() || !r.at_end() || (m.diff && m.parent.empty())) return bad();
    return m;
}

// One snapshot directory, decoded and checked.
struct Loaded {
    std::string dir;
    json config;
    state::Sections sections;
    MemoryLayout memory;
};

Result<Loaded> load_dir(const std::string& dir) {
    Loaded l;
    l.dir = absolute(dir);
    auto sections = state::read_state_file(l.dir + "/" + kStateFile);
    if (!sections) return std::unexpected(sections.error());
    l.sections = std::move(*sections);
    for (Section s : {Section::kConfig, Section::kVcpu, Section::kThinProcess, Section::kAddressSpace, Section::kMemory})
        if (!l.sections.count(s))
            return fail(l.dir + ": snapshot is missing section " + std::to_string(static_cast<uint32_t>(s)), EINVAL);
    const auto& c = l.sections[Section::kConfig];
    l.config = json::parse(c.begin(), c.end(), nullptr, false);
    if (l.config.is_discarded() || !l.config.is_object()) return fail(l.dir + ": snapshot config is not JSON", EINVAL);
    const auto& m = l.sections[Section::kMemory];
    auto mem = get_memory(Reader(std::string_view(reinterpret_cast<const char*>(m.data()), m.size())));
    if (!mem) return wrap(l.dir, mem.error());
    l.memory = std::move(*mem);
    return l;
}

std::string_view view(const std::vector<uint8_t>& v) { return {reinterpret_cast<const char*>(v.data()), v.size()}; }

Result<ThinVmConfig> config_from_json(const json& j) {
    try {
        ThinVmConfig c;
        c.program = j.at("program").get<std::string>();
        c.argv = j.at("argv").get<std::vector<std::string>>();
        c.envp = j.at("envp").get<std::vector<std::string>>();
        c.mem_size = j.at("mem_bytes").get<uint64_t>();
        c.root = j.at("root").get<std::string>();
        for (const auto& m : j.at("rw")) c.rw.push_back({m.at("host").get<std::string>(), m.at("guest").get<std::string>()});
        c.trace_syscalls = j.value("trace_syscalls", false);
        return c;
    } catch (const json::exception& e) {
        return fail(std::string("snapshot config: ") + e.what(), EINVAL);
    }
}

}  // namespace

// ------------------------------------------------------------ capture

Result<> ThinVm::Impl::start_dirty_logging() {
    if (!dirty_logging) {
        if (auto r = register_memory(KVM_MEM_LOG_DIRTY_PAGES); !r) return r;
        mem->start_dirty_tracking();
        dirty_logging = true;
    }
    auto pages = collect_dirty_pages();  // clears KVM's logs and ours
    if (!pages) return std::unexpected(pages.error());
    return {};
}

Result<std::vector<uint64_t>> ThinVm::Impl::collect_dirty_pages() {
    auto fetch = [&](uint32_t slot, uint64_t gpa, uint64_t size) -> Result<> {
        std::vector<uint64_t> bitmap((size / memory::kPageSize + 63) / 64 + 1, 0);
        if (auto r = vm->get_dirty_log(slot, bitmap.data()); !r) return r;
        mem->merge_dirty_bitmap(gpa, bitmap);
        return {};
    };
    if (auto r = fetch(0, 0, mem->size()); !r) return std::unexpected(r.error());
    uint32_t slot = 1;
    for (const auto& region : mem->file_regions())
        if (auto r = fetch(slot++, region.gpa, region.map.size()); !r) return std::unexpected(r.error());
    return mem->take_dirty();
}

Result<SnapshotInfo> ThinVm::Impl::write_snapshot(const std::string& dir_in, SnapshotType type) {
    std::string dir = absolute(dir_in);
    bool created = false;
    auto r = write_snapshot_files(dir, type, created);
    if (!r && created) {
        // Leave nothing half-written behind in a directory we made.
        ::unlink((dir + "/" + kMemoryFile).c_str());
        ::unlink((dir + "/" + kStateFile + std::string(".tmp")).c_str());
        ::rmdir(dir.c_str());
    }
    return r;
}

Result<SnapshotInfo> ThinVm::Impl::write_snapshot_files(const std::string& dir, SnapshotType type, bool& created) {
    if (type == SnapshotType::kDiff && last_snapshot.empty())
        return fail("no earlier snapshot of this VM to build a diff on; take a full snapshot first", EINVAL);
    auto ps = process->capture();
    if (!ps) return std::unexpected(ps.error());
    if (::mkdir(dir.c_str(), 0700) == 0) created = true;
    else if (errno != EEXIST) return fail_errno("create " + dir);
    if (::access((dir + "/" + kStateFile).c_str(), F_OK) == 0)
        return fail(dir + " already holds a snapshot; choose a new directory", EEXIST);

    Writer vcpu_w;
    Result<> err;
    put_vcpu(vcpu_w, *this->vcpu, err);
    if (!err) return std::unexpected(err.error());
    Writer proc_w, as_w, mem_w;
    put_process(proc_w, *ps);
    put_address_space(as_w, *as);

    MemoryLayout layout;
    layout.ram_size = mem->size();
    for (const auto& r : mem->file_regions()) layout.regions.push_back({r.gpa, r.map.size()});
    layout.diff = type == SnapshotType::kDiff;
    layout.parent = layout.diff ? last_snapshot : std::string();

    // Which pages go into memory.img.
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    std::vector<uint64_t> dirty;
    if (dirty_logging) {
        auto d = collect_dirty_pages();
        if (!d) return std::unexpected(d.error());
        dirty = std::move(*d);
    }
    if (layout.diff) {
        for (uint64_t p : dirty) ranges.emplace_back(p, p + memory::kPageSize);
        layout.pages = dirty;
    } else {
        int source = mem->memfd() >= 0 ? mem->memfd() : mem->image_fd();
        ranges = data_ranges(source, mem->size());
        if (mem->memfd() < 0)  // restored: what the image held, plus what changed since
            for (uint64_t p : dirty)
                if (p < mem->size()) ranges.emplace_back(p, p + memory::kPageSize);
        for (const auto& r : mem->file_regions()) ranges.emplace_back(r.gpa, r.gpa + r.map.size());
    }
    std::string mem_path = dir + "/" + kMemoryFile;
    Fd out(::open(mem_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!out) return fail_errno("create " + mem_path);
    SnapshotInfo info;
    info.path = dir;
    info.type = type;
    info.parent = layout.parent;
    for (auto [begin, end] : ranges) {
        uint8_t* h = mem->host(begin, end - begin);
        if (!h) return fail("snapshot: memory range outside guest memory", EFAULT);
        if (auto r = pwrite_all(out.get(), h, end - begin, begin); !r) return std::unexpected(r.error());
        info.memory_bytes += end - begin;
    }
    info.pages = info.memory_bytes / memory::kPageSize;
    if (::ftruncate(out.get(), static_cast<off_t>(layout.phys_end())) < 0) return fail_errno("truncate " + mem_path);
    if (::fsync(out.get()) < 0) return fail_errno("fsync " + mem_path);
    put_memory(mem_w, layout);

    json cfg = {{"program", config.program},
                {"argv", config.argv},
                {"envp", config.envp},
                {"mem_bytes", mem->size()},
                {"root", config.root},
                {"rw", json::array()},
                {"trace_syscalls", config.trace_syscalls},
                {"snapshot", {{"type", layout.diff ? "diff" : "full"}, {"parent", layout.parent}, {"created_at", now_rfc3339()}}}};
    for (const auto& m : config.rw) cfg["rw"].push_back({{"host", m.host_dir}, {"guest", m.guest_path}});
    std::string cfg_text = cfg.dump(2);
    state::Sections sections;
    sections[Section::kConfig] = std::vector<uint8_t>(cfg_text.begin(), cfg_text.end());
    sections[Section::kVcpu] = vcpu_w.take();
    sections[Section::kThinProcess] = proc_w.take();
    sections[Section::kAddressSpace] = as_w.take();
    sections[Section::kMemory] = mem_w.take();
    // state.bin last: a directory with it is a complete snapshot.
    if (auto r = state::write_state_file(dir + "/" + kStateFile, sections); !r) return std::unexpected(r.error());

    if (auto r = start_dirty_logging(); !r) return std::unexpected(r.error());
    last_snapshot = dir;
    return info;
}

// ------------------------------------------------------------ restore

Result<std::unique_ptr<ThinVm>> ThinVm::restore(const std::string& dir, const std::string& kvm_path) {
    std::unique_ptr<ThinVm> self(new ThinVm());  // first, so its timer covers reading the files
    Impl& m = *self->impl_;
    auto top = load_dir(dir);
    if (!top) return std::unexpected(top.error());
    // The chain, newest first, back to the full snapshot at its base.
    std::vector<Loaded> chain;
    chain.push_back(std::move(*top));
    while (chain.back().memory.diff) {
        if (chain.size() >= kMaxChain) return fail(dir + ": snapshot chain longer than 64 (or a loop)", EINVAL);
        auto parent = load_dir(chain.back().memory.parent);
        if (!parent) return wrap("parent of " + chain.back().dir, parent.error());
        const auto &a = chain.back().memory, &b = parent->memory;
        if (a.ram_size != b.ram_size || a.phys_end() != b.phys_end())
            return fail(chain.back().dir + ": memory layout differs from its parent " + parent->dir, EINVAL);
        chain.push_back(std::move(*parent));
    }
    const Loaded& newest = chain.front();
    const MemoryLayout& layout = newest.memory;

    auto config = config_from_json(newest.config);
    if (!config) return wrap(newest.dir, config.error());
    config->kvm_path = kvm_path;
    if (config->mem_size != layout.ram_size) return fail(newest.dir + ": memory size disagrees with the layout", EINVAL);

    m.config = *config;

    std::string base_img = chain.back().dir + "/" + kMemoryFile;
    Fd image(::open(base_img.c_str(), O_RDONLY | O_CLOEXEC));
    if (!image) return fail_errno(base_img);
    struct stat st;
    if (::fstat(image.get(), &st) < 0) return fail_errno(base_img);
    if (static_cast<uint64_t>(st.st_size) < layout.phys_end())
        return fail(base_img + ": truncated (" + std::to_string(st.st_size) + " bytes, need " +
                        std::to_string(layout.phys_end()) + ")",
                    EINVAL);
    auto mem = memory::GuestMemory::from_image(std::move(image), layout.ram_size, layout.regions);
    if (!mem) return wrap(base_img, mem.error());
    m.mem = std::make_unique<memory::GuestMemory>(std::move(*mem));
    // Diffs, oldest first, on top of the base image.
    for (auto it = chain.rbegin() + 1; it != chain.rend(); ++it) {
        std::string img = it->dir + "/" + kMemoryFile;
        Fd fd(::open(img.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) return fail_errno(img);
        for (uint64_t page : it->memory.pages) {
            uint8_t* h = m.mem->host(page, memory::kPageSize);
            if (!h) return fail(img + ": page outside guest memory", EINVAL);
            if (::pread(fd.get(), h, memory::kPageSize, static_cast<off_t>(page)) != static_cast<ssize_t>(memory::kPageSize))
                return fail(img + ": truncated", EINVAL);
        }
    }
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

    auto cpuid = m.create_vcpu();
    if (!cpuid) return std::unexpected(cpuid.error());
    Reader r(view(newest.sections.at(Section::kVcpu)));
    kvm_regs regs;
    kvm_sregs sregs;
    kvm_fpu fpu;
    std::vector<uint32_t> xsave(1024);
    kvm_xcrs xcrs;
    kvm_vcpu_events events;
    r.blob(&regs, sizeof regs);
    r.blob(&sregs, sizeof sregs);
    r.blob(&fpu, sizeof fpu);
    r.blob(xsave.data(), xsave.size() * 4);
    r.blob(&xcrs, sizeof xcrs);
    r.blob(&events, sizeof events);
    uint32_t nmsrs = r.u32();
    if (nmsrs > 64) r.fail();
    std::vector<std::pair<uint32_t, uint64_t>> msrs;
    for (uint32_t i = 0; r.ok() && i < nmsrs; ++i) {
        uint32_t index = r.u32();
        uint64_t value = r.u64();
        if (std::find(kMsrs.begin(), kMsrs.end(), index) == kMsrs.end()) r.fail();
        msrs.emplace_back(index, value);
    }
    uint8_t has_lapic = r.u8();
    if (!r.ok() || !r.at_end() || has_lapic || xcrs.nr_xcrs > KVM_MAX_XCRS)
        return fail(newest.dir + ": vCPU state is malformed", EINVAL);
    // KVM validates the architectural state itself; its refusal is an error.
    for (auto res : {m.vcpu->set_sregs(sregs), m.vcpu->set_regs(regs), m.vcpu->set_fpu(fpu), m.vcpu->set_xsave(xsave),
                     m.vcpu->set_xcrs(xcrs), m.vcpu->set_events(events)})
        if (!res) return wrap(newest.dir + ": restoring vCPU state", res.error());
    for (auto msr : msrs) (void)m.vcpu->set_msrs({msr});  // best effort: PVM refuses some
    m.timer.mark("vcpu state");

    m.finish_setup(std::move(*sandbox));
    if (auto res = m.process->restore(*ps); !res) return std::unexpected(res.error());
    m.restored_from = newest.dir;
    m.last_snapshot = newest.dir;
    m.timer.mark("process state");
    return self;
}

}  // namespace vessel::vmm
