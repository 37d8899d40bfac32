// Guest physical memory: one memfd, mapped shared into the VMM.
//
// The memfd is what makes later features cheap: snapshots write it out, restore
// maps a file copy-on-write, fork-style clones map it again.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>

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
    // `size` is rounded up to a page. Pages are allocated by the host on first
    // touch, so an idle guest costs nothing beyond what it used.
    static Result<GuestMemory> create(uint64_t size, const char* name = "vessel-guest-ram");

    uint64_t size() const { return map_.size(); }
    uint8_t* host_base() const { return map_.data(); }
    int memfd() const { return fd_.get(); }

    bool contains(uint64_t gpa, uint64_t len) const {
        return gpa <= size() && len <= size() - gpa;
    }
    // Host pointer for [gpa, gpa+len), or nullptr when outside guest RAM.
    uint8_t* host(uint64_t gpa, uint64_t len) const {
        return contains(gpa, len) ? map_.data() + gpa : nullptr;
    }
    std::span<uint8_t> span(uint64_t gpa, uint64_t len) const {
        return contains(gpa, len) ? std::span<uint8_t>(map_.data() + gpa, len) : std::span<uint8_t>{};
    }

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
    // pointed at them: KVM does not see the VMM's own writes to guest page tables.
    Result<> invalidate(uint64_t gpa, uint64_t len);

private:
    Fd fd_;
    Mapping map_;
};

}  // namespace vessel::memory
