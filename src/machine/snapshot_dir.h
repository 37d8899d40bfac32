// What thin and full snapshots share: the snapshot directory (state.bin and
// the sparse memory.img), the memory section, diff chains, the copy-on-write
// mapping of a chain and the writing of memory images. Internal to machine/.
#pragma once

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/safe_file.h"
#include "kvm/kvm.h"
#include "machine/control.h"
#include "machine/snapshot.h"
#include "memory/guest_memory.h"
#include "state/format.h"

namespace vessel::machine::snapshot {

inline constexpr const char* kStateFile = "state.bin";
inline constexpr const char* kMemoryFile = "memory.img";
inline constexpr unsigned kMaxChain = 64;
inline constexpr uint64_t kMaxRam = 64ull << 30;

// j[key] as an unsigned integer. A float, a negative number or anything
// else throws std::domain_error: nlohmann's get<uint64_t>() would convert
// them, a huge float with undefined behaviour (found by fuzz/thin_snapshot).
inline uint64_t json_unsigned(const nlohmann::json& j, const char* key) {
    const auto& v = j.at(key);
    if (!v.is_number_integer() || (!v.is_number_unsigned() && v.get<int64_t>() < 0))
        throw std::domain_error(std::string("'") + key + "' must be an unsigned integer");
    return v.get<uint64_t>();
}

// `dir` made absolute against the working directory.
std::string absolute(const std::string& dir);

inline std::string_view view(const std::vector<uint8_t>& v) {
    return {reinterpret_cast<const char*>(v.data()), v.size()};
}

// The memory section (type 5).
struct MemoryLayout {
    uint64_t ram_size = 0;
    std::vector<memory::GuestMemory::RegionSpec> regions;  // thin VMs: program images above RAM
    bool diff = false;
    std::string parent;
    std::vector<uint64_t> pages;  // diff: the pages memory.img holds
    uint64_t phys_end() const { return regions.empty() ? ram_size : regions.back().gpa + regions.back().size; }
};
void put_memory(state::Writer& w, const MemoryLayout& m);
// Checks the layout (RAM page aligned, 1 page to 64 GiB; regions ascending
// above RAM; diff pages ascending inside it). Machine-specific limits are the
// caller's.
state::RecordResult<MemoryLayout> get_memory(state::Reader r);

// One snapshot directory, read, verified and of the expected machine kind.
struct Loaded {
    std::string dir;
    nlohmann::json config;
    state::Sections sections;
    MemoryLayout memory;
};
// Errors name the directory. A snapshot of the other kind of machine fails
// with one line saying so.
Result<Loaded> load_dir(const std::string& dir, MachineKind kind, const std::vector<state::Section>& required);
// The snapshot and its parents, newest first, back to the full snapshot at
// the base (at most kMaxChain; loops refused; every link the same layout).
Result<std::vector<Loaded>> load_chain(const std::string& dir, MachineKind kind,
                                       const std::vector<state::Section>& required);
// Guest memory for a chain: the base memory.img mapped copy-on-write, each
// diff's pages copied on top, oldest first.
Result<memory::GuestMemory> map_chain(const std::vector<Loaded>& chain);

// Pages written since the last call: KVM's dirty logs (slot 0 = RAM, slots
// 1.. = file regions, in order) merged with the VMM's own writes.
Result<std::vector<uint64_t>> collect_dirty_pages(kvm::Vm& vm, memory::GuestMemory& mem);

// A snapshot being written into a directory: memory.img and state.bin are
// written under temporary names (base/safe_file.h) and renamed in by
// commit(), memory.img first and state.bin last, whose presence marks a
// complete snapshot. Dropped before commit() succeeded (an error, a full
// disk), it leaves the directory as it found it, and removes it again if it
// created it. Nothing is ever replaced: diff snapshots name their parent by
// its directory, so a snapshot rewritten in place would silently corrupt
// every diff built on it.
class Output {
public:
    // Creates `dir` (mode 0700) or takes an existing directory, which must
    // not be a symbolic link nor hold a snapshot (state.bin or memory.img)
    // already.
    static Result<Output> open(const std::string& dir);
    // The same check in a directory the client opened and passed (`dir` then
    // only names it in the records, for a later restore).
    static Result<Output> open_in(DirFd given, const std::string& dir);
    Output(Output&& other) noexcept;
    Output& operator=(Output&&) = delete;
    ~Output();

    const std::string& dir() const { return dir_; }
    AtomicFile& memory() { return memory_; }
    // Encodes and writes state.bin (under its temporary name), synced.
    Result<> write_state(const state::Sections& sections);
    Result<> commit();

private:
    Output() = default;
    std::string dir_;
    DirFd fd_;
    bool created_ = false;
    bool committed_ = false;
    AtomicFile memory_, state_;
};

// Output::open() of the target's path, or open_in() of the directory it
// carries (a duplicate of it: the caller's stays open).
Result<Output> open_output(const SnapshotTarget& target);

// Writes the memory image into `out` (memory.img's temporary file, synced)
// and returns the layout for the memory section. With dirty logging on, the
// pages written since the last snapshot are collected first (which clears
// the logs). A diff (on `parent`, the last snapshot) holds just those pages;
// a full image holds every page the guest has: the memfd's data, or for
// memory restored from an image, the image's data plus every page changed
// since (found in /proc/self/pagemap: private copies), and the file regions.
// Fills type, parent, memory_bytes and pages of `info`.
Result<MemoryLayout> write_memory_image(AtomicFile& out, kvm::Vm& vm, memory::GuestMemory& mem, SnapshotType type,
                                        const std::string& parent, bool dirty_logging, SnapshotInfo& info);

// The "snapshot" member of the config JSON.
nlohmann::json metadata(const MemoryLayout& layout);

// What a machine keeps between its snapshots: whether KVM logs the pages
// the guest writes, and the snapshot the next diff builds on.
struct DirtyTracking {
    bool logging = false;
    std::string last_snapshot;
};

// Turns logging on through `enable` (which registers the machine's memory
// with KVM_MEM_LOG_DIRTY_PAGES) unless it is on, then clears the logs: the
// next diff holds only what is written from now on.
Result<> restart_dirty_logging(kvm::Vm& vm, memory::GuestMemory& mem, DirtyTracking& tracking,
                               const std::function<Result<>()>& enable);

// Writes a snapshot of a paused machine into `target`: the memory image
// (full, or a diff on tracking.last_snapshot), then state.bin holding
// `config` (with its "snapshot" member added), the memory section and the
// machine's component `records`; committed atomically (Output). Then
// restarts dirty logging and makes this the parent of the next diff.
Result<SnapshotInfo> write(const SnapshotTarget& target, SnapshotType type, kvm::Vm& vm, memory::GuestMemory& mem,
                           DirtyTracking& tracking, nlohmann::json config, state::Sections records,
                           const std::function<Result<>()>& enable_logging);

}  // namespace vessel::machine::snapshot
