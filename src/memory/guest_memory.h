// Guest physical memory: one memfd, mapped shared into the VMM.
//
// The memfd is what makes later features cheap: snapshots write it out, restore
// maps a file copy-on-write, fork-style clones map it again.
#pragma once

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

    // Size of RAM (the memfd); file regions lie above it.
    uint64_t size() const { return map_.size(); }
    uint8_t* host_base() const { return map_.data(); }
    int memfd() const { return fd_.get(); }

    // True when [gpa, gpa+len) is inside RAM.
    bool contains(uint64_t gpa, uint64_t len) const {
        return gpa <= size() && len <= size() - gpa;
    }
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

    // Maps `size` bytes of `fd` privately above RAM (2 MiB aligned); returns
    // the region's guest-physical base. The caller registers it with KVM.
    Result<uint64_t> add_file_region(int fd, uint64_t size);
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
    // tables. Works on RAM and file regions.
    Result<> invalidate(uint64_t gpa, uint64_t len);

private:
    Fd fd_;
    Mapping map_;
    std::vector<FileRegion> regions_;
};

}  // namespace vessel::memory
