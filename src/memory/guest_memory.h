// Guest physical memory: one memfd, mapped shared into the VMM.
//
// The memfd is what makes later features cheap: snapshots write it out, restore
// maps a file copy-on-write, fork-style clones map it again.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/mapping.h"
#include "base/result.h"

namespace vessel::memory {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kPageMask = kPageSize - 1;

inline constexpr uint64_t page_align_down(uint64_t v) { return v & ~kPageMask; }
// Callers check for overflow first (values near UINT64_MAX wrap to 0).
inline constexpr uint64_t page_align_up(uint64_t v) { return (v + kPageMask) & ~kPageMask; }

class GuestMemory {
public:
    // A read-mostly window onto a file (a program image): a private mapping,
    // so the guest reads the page cache and writes copy pages on demand.
    struct FileRegion {
        uint64_t gpa;
        Mapping map;
    };

    // `size` is rounded up to a page. Pages are allocated by the host on first
    // touch, so an idle guest costs nothing beyond what it used.
    static Result<GuestMemory> create(uint64_t size, const char* name = "vessel-guest-ram");

    // Guest memory restored from a memory image (a snapshot): RAM is
    // [0, ram_size) of `image_fd` and each file region lies at its own
    // guest-physical address in the same file. Everything is mapped
    // copy-on-write, so pages are read from the image on first touch and the
    // image itself never changes.
    struct RegionSpec {
        uint64_t gpa, size;
    };
    static Result<GuestMemory> from_image(Fd image_fd, uint64_t ram_size, const std::vector<RegionSpec>& regions);

    // Size of RAM (the memfd); file regions lie above it.
    uint64_t size() const { return map_.size(); }
    uint8_t* host_base() const { return map_.data(); }
    // The memfd behind RAM, or -1 when RAM comes from an image (from_image).
    int memfd() const { return image_backed_ ? -1 : fd_.get(); }
    // The image RAM was restored from, or -1.
    int image_fd() const { return image_backed_ ? fd_.get() : -1; }

    // True when [gpa, gpa+len) is inside RAM.
    bool contains(uint64_t gpa, uint64_t len) const { return gpa <= size() && len <= size() - gpa; }
    // Host pointer for [gpa, gpa+len) inside RAM or one file region, or nullptr.
    uint8_t* host(uint64_t gpa, uint64_t len) const {
        if (contains(gpa, len)) return map_.data() + gpa;
        for (const auto& r : regions_)
            if (gpa >= r.gpa && gpa - r.gpa <= r.map.size() && len <= r.map.size() - (gpa - r.gpa))
                return r.map.data() + (gpa - r.gpa);
        return nullptr;
    }
    std::span<uint8_t> span(uint64_t gpa, uint64_t len) const {
        uint8_t* h = host(gpa, len);
        return h ? std::span<uint8_t>(h, len) : std::span<uint8_t>{};
    }

    // Maps `size` bytes of `fd` from `offset` (page-aligned) privately above
    // RAM (2 MiB aligned); returns the region's guest-physical base. The
    // caller registers it with KVM (kvm_slots()). A region that starts right
    // at the end of RAM is mapped right after RAM in the VMM too, into
    // address space create() keeps free for that.
    Result<uint64_t> add_file_region(int fd, uint64_t size, uint64_t offset = 0);
    // The memory slots to give KVM: RAM and the file regions, a region
    // joining the slot before it when it follows it in guest-physical and in
    // host addresses alike (each slot costs KVM a synchronize_srcu, ~0.1 ms
    // here). Registering and dirty logging both use this list.
    struct Slot {
        uint64_t gpa, size;
        uint8_t* host;
    };
    std::vector<Slot> kvm_slots() const;
    // Highest guest-physical address in use (end of RAM or of the last region).
    uint64_t phys_end() const { return regions_.empty() ? size() : regions_.back().gpa + regions_.back().map.size(); }
    const std::vector<FileRegion>& file_regions() const { return regions_; }

    Result<> read(uint64_t gpa, void* out, uint64_t len) const;
    Result<> write(uint64_t gpa, const void* in, uint64_t len);

    template <class T>
    Result<T> read_obj(uint64_t gpa) const {
        T v;
        if (auto r = read(gpa, &v, sizeof v); !r) return std::unexpected(r.error());
        return v;
    }

    // Returns pages to the host; they read back as zeros. KVM drops any
    // translation it cached for them (through the MMU notifier).
    Result<> discard(uint64_t gpa, uint64_t len);
    // Makes KVM forget cached translations of these pages while keeping their
    // contents. Needed after the VMM rewrites a guest page-table entry that
    // pointed at them: KVM does not see the VMM's own writes to guest page
    // tables. Works on RAM and file regions; on memfd RAM it notifies KVM of
    // exactly these pages (no mapping split, which would notify 2 MiB).
    Result<> invalidate(uint64_t gpa, uint64_t len);

    // The ranges [begin, end) of RAM that may hold data: a page outside
    // them has not been written since it was last discarded, and reads as
    // zeros. All of RAM when that cannot be told (RAM from an image).
    std::vector<std::pair<uint64_t, uint64_t>> data_ranges() const;
    // Bytes of RAM and file regions the host has resident: the guest memory
    // actually touched so far (by the guest or the VMM).
    uint64_t resident_bytes() const;

    // Dirty tracking of the VMM's own writes to guest memory (KVM logs only
    // the guest's). Off until started; writers call note_write().
    void start_dirty_tracking();
    bool dirty_tracking() const { return !dirty_.empty(); }
    void note_write(uint64_t gpa, uint64_t len) {
        if (dirty_.empty() || len == 0) return;
        for (uint64_t p = gpa >> 12, last = (gpa + len - 1) >> 12; p <= last && (p >> 6) < dirty_.size(); ++p)
            std::atomic_ref<uint64_t>(dirty_[p >> 6]).fetch_or(1ull << (p & 63), std::memory_order_relaxed);
    }
    // Marks pages from a KVM dirty bitmap (one bit per page from `base_gpa`).
    void merge_dirty_bitmap(uint64_t base_gpa, const std::vector<uint64_t>& bitmap);
    // Guest-physical page addresses written since the last call (or since
    // tracking started), in ascending order; clears the record.
    std::vector<uint64_t> take_dirty();

private:
    Fd fd_;
    Mapping map_;
    std::vector<FileRegion> regions_;
    Mapping headroom_;  // free address space right after RAM (create())
    bool image_backed_ = false;
    std::vector<uint64_t> dirty_;
};

}  // namespace vessel::memory
