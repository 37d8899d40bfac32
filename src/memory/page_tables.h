// x86-64 4-level guest page tables, built and owned by the VMM.
//
// Intermediate tables are never freed or repointed once created: KVM (shadow
// paging on PVM hosts) caches them and does not observe the VMM's writes, so
// the only entries that ever change are leaves, and callers pair each leaf
// change with GuestMemory::invalidate() of the page it used to map.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "base/result.h"
#include "memory/guest_memory.h"
#include "memory/page_allocator.h"

namespace vessel::memory {

namespace pte {
inline constexpr uint64_t kPresent = 1ull << 0;
inline constexpr uint64_t kWrite = 1ull << 1;
inline constexpr uint64_t kUser = 1ull << 2;
inline constexpr uint64_t kAccessed = 1ull << 5;
inline constexpr uint64_t kDirty = 1ull << 6;
inline constexpr uint64_t kHuge = 1ull << 7;
inline constexpr uint64_t kNoExec = 1ull << 63;
inline constexpr uint64_t kAddrMask = 0x000f'ffff'ffff'f000ull;
}  // namespace pte

// Lowest non-canonical address: user mappings live below it.
inline constexpr uint64_t kUserAddressEnd = 1ull << 47;

class PageTables {
public:
    PageTables(GuestMemory& mem, PageAllocator& alloc) : mem_(&mem), alloc_(&alloc) {}

    // Allocates the root (PML4) page; call once.
    Result<> init();
    // Adopts an existing root (restore from snapshot).
    void adopt(uint64_t root) {
        root_ = root;
        last_leaf_table_ = nullptr;
    }
    uint64_t root() const { return root_; }

    // Installs a 4 KiB leaf `va -> pa` with `flags` (pte:: bits; kPresent implied).
    Result<> map(uint64_t va, uint64_t pa, uint64_t flags);
    // Installs `pages` leaves `va + i * 4 KiB -> pa + i * 4 KiB`: one walk
    // per leaf table. On failure the leaves written so far stay.
    Result<> map_run(uint64_t va, uint64_t pa, uint64_t pages, uint64_t flags);
    // Clears the leaf for `va`; returns the page it mapped, if any.
    std::optional<uint64_t> unmap(uint64_t va);
    // The leaf entry for `va` (0 when absent).
    uint64_t leaf(uint64_t va) const;
    // Rewrites the flags of an existing leaf; false when absent.
    bool set_flags(uint64_t va, uint64_t flags);

    // Guest-physical address for `va` if mapped with the given access rights.
    std::optional<uint64_t> translate(uint64_t va, bool write = false) const;

    // Calls f(va, leaf) for every present 4 KiB leaf, in address order.
    void for_each_leaf(const std::function<void(uint64_t, uint64_t)>& f) const;

private:
    uint64_t* entry_ptr(uint64_t table, unsigned index) const;
    uint64_t* walk(uint64_t va, bool create);
    void note_entry_write(const uint64_t* entry) const;

    GuestMemory* mem_;
    PageAllocator* alloc_;
    uint64_t root_ = 0;
    // The last leaf table walk() reached and the 2 MiB of addresses it maps:
    // consecutive pages (an 8 MiB stack is 2048 of them) skip the walk.
    // Table pages are never freed, so it stays valid until adopt().
    uint64_t* last_leaf_table_ = nullptr;
    uint64_t last_leaf_span_ = 0;
};

}  // namespace vessel::memory
