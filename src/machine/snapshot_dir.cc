#include "machine/snapshot_dir.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/fd.h"

namespace vessel::machine {

const char* to_string(MachineKind kind) { return kind == MachineKind::kFull ? "full machine" : "thin VM"; }

namespace snapshot {
namespace {

using json = nlohmann::json;
using state::Reader;
using state::Section;
using state::Writer;

Result<> pwrite_all(int fd, const void* data, uint64_t len, uint64_t off, const std::string& path) {
    auto* p = static_cast<const uint8_t*>(data);
    while (len) {
        ssize_t n = ::pwrite(fd, p, len, static_cast<off_t>(off));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return fail_errno("write " + path);
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

// Ranges of [base, base+size) (page aligned) holding private pages: the
// copies a MAP_PRIVATE image mapping made where the guest or KVM wrote, in
// memory or swapped out. Pages still backed by the image are left out.
Result<std::vector<std::pair<uint64_t, uint64_t>>> private_ranges(const uint8_t* base, uint64_t size) {
    constexpr uint64_t kPresent = 1ull << 63, kSwapped = 1ull << 62, kFileOrShared = 1ull << 61;
    Fd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    if (!fd) return fail_errno("/proc/self/pagemap");
    std::vector<std::pair<uint64_t, uint64_t>> out;
    const uint64_t pages = size / memory::kPageSize;
    std::vector<uint64_t> entries(4096);
    for (uint64_t first = 0; first < pages; first += entries.size()) {
        uint64_t n = std::min<uint64_t>(entries.size(), pages - first);
        off_t off = static_cast<off_t>((reinterpret_cast<uintptr_t>(base) / memory::kPageSize + first) * 8);
        ssize_t got = ::pread(fd.get(), entries.data(), n * 8, off);
        if (got != static_cast<ssize_t>(n * 8)) return fail_errno("/proc/self/pagemap: read");
        for (uint64_t i = 0; i < n; ++i) {
            uint64_t e = entries[i];
            if (!(e & (kPresent | kSwapped)) || (e & kFileOrShared)) continue;
            uint64_t gpa = (first + i) * memory::kPageSize;
            if (!out.empty() && out.back().second == gpa)
                out.back().second += memory::kPageSize;
            else
                out.emplace_back(gpa, gpa + memory::kPageSize);
        }
    }
    return out;
}

}  // namespace

std::string absolute(const std::string& dir) {
    if (!dir.empty() && dir[0] == '/') return dir;
    char cwd[4096];
    return ::getcwd(cwd, sizeof cwd) ? std::string(cwd) + "/" + dir : dir;
}

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

state::RecordResult<MemoryLayout> get_memory(Reader r) {
    auto bad = [] { return state::malformed("memory layout is malformed"); };
    MemoryLayout m;
    m.ram_size = r.u64();
    if (m.ram_size == 0 || m.ram_size > kMaxRam || m.ram_size & memory::kPageMask) return bad();
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

Result<MachineKind> kind_of(const json& config) {
    if (!config.contains("kind")) return MachineKind::kThin;  // written before full machines had snapshots
    const auto& k = config["kind"];
    if (k == "thin") return MachineKind::kThin;
    if (k == "full") return MachineKind::kFull;
    return fail("snapshot config: unknown machine kind " + k.dump(), EINVAL);
}

Result<Loaded> load_dir(const std::string& dir, MachineKind kind, const std::vector<Section>& required) {
    Loaded l;
    l.dir = absolute(dir);
    auto sections = state::read_state_file(l.dir + "/" + kStateFile);
    if (!sections) return std::unexpected(sections.error());
    l.sections = std::move(*sections);
    auto c = l.sections.find(Section::kConfig);
    if (c == l.sections.end()) return fail(l.dir + ": snapshot is missing its config section", EINVAL);
    l.config = json::parse(c->second.begin(), c->second.end(), nullptr, false);
    if (l.config.is_discarded() || !l.config.is_object()) return fail(l.dir + ": snapshot config is not JSON", EINVAL);
    auto k = kind_of(l.config);
    if (!k) return wrap(l.dir, k.error());
    if (*k != kind)
        return fail(l.dir + ": this is a snapshot of a " + to_string(*k) + ", not of a " + to_string(kind) +
                        (*k == MachineKind::kFull ? " (written by vessel boot)" : " (written by vessel run)"),
                    EINVAL);
    for (Section s : required)
        if (!l.sections.count(s))
            return fail(l.dir + ": snapshot is missing section " + std::to_string(static_cast<uint32_t>(s)), EINVAL);
    auto m = l.sections.find(Section::kMemory);
    if (m == l.sections.end()) return fail(l.dir + ": snapshot is missing its memory section", EINVAL);
    auto mem = get_memory(Reader(view(m->second)));
    if (!mem) return wrap(l.dir, mem.error());
    l.memory = std::move(*mem);
    return l;
}

Result<std::vector<Loaded>> load_chain(const std::string& dir, MachineKind kind, const std::vector<Section>& required) {
    auto top = load_dir(dir, kind, required);
    if (!top) return std::unexpected(top.error());
    std::vector<Loaded> chain;
    chain.push_back(std::move(*top));
    while (chain.back().memory.diff) {
        if (chain.size() >= kMaxChain) return fail(dir + ": snapshot chain longer than 64 (or a loop)", EINVAL);
        auto parent = load_dir(chain.back().memory.parent, kind, required);
        if (!parent) return wrap("parent of " + chain.back().dir, parent.error());
        const auto &a = chain.back().memory, &b = parent->memory;
        if (a.ram_size != b.ram_size || a.phys_end() != b.phys_end())
            return fail(chain.back().dir + ": memory layout differs from its parent " + parent->dir, EINVAL);
        chain.push_back(std::move(*parent));
    }
    return chain;
}

Result<memory::GuestMemory> map_chain(const std::vector<Loaded>& chain) {
    const MemoryLayout& layout = chain.front().memory;
    std::string base_img = chain.back().dir + "/" + kMemoryFile;
    auto opened = open_regular(base_img);
    if (!opened) return std::unexpected(opened.error());
    Fd image = std::move(*opened);
    struct stat st;
    if (::fstat(image.get(), &st) < 0) return fail_errno(base_img);
    if (static_cast<uint64_t>(st.st_size) < layout.phys_end())
        return fail(base_img + ": truncated (" + std::to_string(st.st_size) + " bytes, need " +
                        std::to_string(layout.phys_end()) + ")",
                    EINVAL);
    auto mem = memory::GuestMemory::from_image(std::move(image), layout.ram_size, layout.regions);
    if (!mem) return wrap(base_img, mem.error());
    // Diffs, oldest first, on top of the base image.
    for (auto it = chain.rbegin() + 1; it != chain.rend(); ++it) {
        std::string img = it->dir + "/" + kMemoryFile;
        auto fd = open_regular(img);
        if (!fd) return std::unexpected(fd.error());
        for (uint64_t page : it->memory.pages) {
            uint8_t* h = mem->host(page, memory::kPageSize);
            if (!h) return fail(img + ": page outside guest memory", EINVAL);
            if (::pread(fd->get(), h, memory::kPageSize, static_cast<off_t>(page)) !=
                static_cast<ssize_t>(memory::kPageSize))
                return fail(img + ": truncated", EINVAL);
        }
    }
    return mem;
}

Result<std::vector<uint64_t>> collect_dirty_pages(kvm::Vm& vm, memory::GuestMemory& mem) {
    uint32_t id = 0;  // the slots as registered: in kvm_slots() order
    for (const auto& slot : mem.kvm_slots()) {
        std::vector<uint64_t> bitmap((slot.size / memory::kPageSize + 63) / 64 + 1, 0);
        if (auto r = vm.get_dirty_log(id++, bitmap.data()); !r) return std::unexpected(r.error());
        mem.merge_dirty_bitmap(slot.gpa, bitmap);
    }
    return mem.take_dirty();
}

Result<Output> Output::open(const std::string& dir) {
    bool created = false;
    auto fd = DirFd::create(dir, &created);
    if (!fd) return wrap("snapshot directory", fd.error());
    auto out = open_in(std::move(*fd), dir);
    if (out)
        out->created_ = created;
    else if (created)
        ::rmdir(dir.c_str());
    return out;
}

Result<Output> Output::open_in(DirFd given, const std::string& dir) {
    Output out;
    out.dir_ = dir;
    out.fd_ = std::move(given);
    for (const char* name : {kStateFile, kMemoryFile})
        if (out.fd_.contains(name))
            return fail(dir + " already holds a snapshot (" + name + "); choose a new directory", EEXIST);
    auto memory = AtomicFile::create(out.fd_, kMemoryFile);
    if (!memory) return std::unexpected(memory.error());
    out.memory_ = std::move(*memory);
    return out;
}

Result<Output> open_output(const SnapshotTarget& target) {
    std::string path = absolute(target.path);
    if (!target.dir) return Output::open(path);
    Fd copy(::fcntl(target.dir->get(), F_DUPFD_CLOEXEC, 0));
    if (!copy) return fail_errno("snapshot directory " + path);
    auto dir = DirFd::adopt(std::move(copy), path);
    if (!dir) return wrap("snapshot directory", dir.error());
    return Output::open_in(std::move(*dir), path);
}

Output::Output(Output&& other) noexcept
    : dir_(std::move(other.dir_)),
      fd_(std::move(other.fd_)),
      created_(std::exchange(other.created_, false)),
      committed_(other.committed_),
      memory_(std::move(other.memory_)),
      state_(std::move(other.state_)) {}

Output::~Output() {
    if (committed_) return;
    memory_.discard();
    state_.discard();
    if (created_) ::rmdir(dir_.c_str());  // only if empty: never what someone else put there
}

Result<> Output::write_state(const state::Sections& sections) {
    auto file = AtomicFile::create(fd_, kStateFile);
    if (!file) return std::unexpected(file.error());
    state_ = std::move(*file);
    const std::vector<uint8_t> data = state::encode_state_file(sections);
    if (auto r = state_.write(data.data(), data.size()); !r) return r;
    return state_.sync();
}

Result<> Output::commit() {
    if (auto r = memory_.commit(AtomicFile::Replace::kNo); !r) return r;
    if (auto r = state_.commit(AtomicFile::Replace::kNo); !r) {
        (void)fd_.remove(kMemoryFile);  // ours: the rename above refused to replace anything
        return r;
    }
    committed_ = true;
    return {};
}

Result<MemoryLayout> write_memory_image(AtomicFile& out, kvm::Vm& vm, memory::GuestMemory& mem, SnapshotType type,
                                        const std::string& parent, bool dirty_logging, SnapshotInfo& info) {
    MemoryLayout layout;
    layout.ram_size = mem.size();
    for (const auto& r : mem.file_regions()) layout.regions.push_back({r.gpa, r.map.size()});
    layout.diff = type == SnapshotType::kDiff;
    layout.parent = layout.diff ? parent : std::string();
    info.type = type;
    info.parent = layout.parent;
    std::vector<uint64_t> dirty;
    if (dirty_logging) {
        auto d = collect_dirty_pages(vm, mem);
        if (!d) return std::unexpected(d.error());
        dirty = std::move(*d);
    }
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    if (layout.diff) {
        for (uint64_t p : dirty) ranges.emplace_back(p, p + memory::kPageSize);
        layout.pages = dirty;
    } else if (mem.memfd() >= 0) {
        ranges = data_ranges(mem.memfd(), mem.size());
    } else {
        // Restored: what the image held, plus every page that differs from it
        // now (written since, or copied in from diffs at restore).
        ranges = data_ranges(mem.image_fd(), mem.size());
        auto changed = private_ranges(mem.host_base(), mem.size());
        if (!changed) return std::unexpected(changed.error());
        ranges.insert(ranges.end(), changed->begin(), changed->end());
    }
    if (!layout.diff)
        for (const auto& r : mem.file_regions()) ranges.emplace_back(r.gpa, r.gpa + r.map.size());
    info.memory_bytes = 0;
    for (auto [begin, end] : ranges) {
        uint8_t* h = mem.host(begin, end - begin);
        if (!h) return fail("snapshot: memory range outside guest memory", EFAULT);
        if (auto r = pwrite_all(out.fd(), h, end - begin, begin, out.path()); !r) return std::unexpected(r.error());
        info.memory_bytes += end - begin;
    }
    info.pages = info.memory_bytes / memory::kPageSize;
    if (::ftruncate(out.fd(), static_cast<off_t>(layout.phys_end())) < 0) return fail_errno("truncate " + out.path());
    if (auto r = out.sync(); !r) return std::unexpected(r.error());
    return layout;
}

json metadata(const MemoryLayout& layout) {
    return {{"type", layout.diff ? "diff" : "full"}, {"parent", layout.parent}, {"created_at", now_rfc3339()}};
}

Result<> restart_dirty_logging(kvm::Vm& vm, memory::GuestMemory& mem, DirtyTracking& tracking,
                               const std::function<Result<>()>& enable) {
    if (!tracking.logging) {
        if (auto r = enable(); !r) return r;
        mem.start_dirty_tracking();
        tracking.logging = true;
    }
    auto pages = collect_dirty_pages(vm, mem);  // clears KVM's logs and ours
    if (!pages) return std::unexpected(pages.error());
    return {};
}

Result<SnapshotInfo> write(const SnapshotTarget& target, SnapshotType type, kvm::Vm& vm, memory::GuestMemory& mem,
                           DirtyTracking& tracking, json config, state::Sections records,
                           const std::function<Result<>()>& enable_logging) {
    if (type == SnapshotType::kDiff && tracking.last_snapshot.empty())
        return fail("no earlier snapshot of this VM to build a diff on; take a full snapshot first", EINVAL);
    // Until commit(), a failure leaves nothing half-written.
    auto out = open_output(target);
    if (!out) return std::unexpected(out.error());
    SnapshotInfo info;
    info.path = out->dir();
    auto layout = write_memory_image(out->memory(), vm, mem, type, tracking.last_snapshot, tracking.logging, info);
    if (!layout) return std::unexpected(layout.error());
    Writer mem_w;
    put_memory(mem_w, *layout);
    config["snapshot"] = metadata(*layout);
    std::string cfg_text = config.dump(2);
    records[Section::kConfig] = std::vector<uint8_t>(cfg_text.begin(), cfg_text.end());
    records[Section::kMemory] = mem_w.take();
    if (auto r = out->write_state(records); !r) return std::unexpected(r.error());
    if (auto r = out->commit(); !r) return std::unexpected(r.error());

    if (auto r = restart_dirty_logging(vm, mem, tracking, enable_logging); !r) return std::unexpected(r.error());
    tracking.last_snapshot = info.path;
    return info;
}

}  // namespace snapshot

Result<MachineKind> snapshot_kind(const std::string& dir) {
    std::string abs = snapshot::absolute(dir);
    auto sections = state::read_state_file(abs + "/" + snapshot::kStateFile);
    if (!sections) return std::unexpected(sections.error());
    auto c = sections->find(state::Section::kConfig);
    if (c == sections->end()) return fail(abs + ": snapshot is missing its config section", EINVAL);
    auto config = nlohmann::json::parse(c->second.begin(), c->second.end(), nullptr, false);
    if (config.is_discarded() || !config.is_object()) return fail(abs + ": snapshot config is not JSON", EINVAL);
    auto k = snapshot::kind_of(config);
    if (!k) return wrap(abs, k.error());
    return *k;
}

}  // namespace vessel::machine
