// A thin guest's user address space: VMAs backed by guest-physical pages.
//
// Pages are assigned when a range is mapped (there is no guest kernel to take
// page faults), but the host only commits memory when a page is touched.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "base/result.h"
#include "memory/guest_memory.h"
#include "memory/guest_virtual.h"
#include "memory/page_allocator.h"
#include "memory/page_tables.h"

namespace vessel::memory {

// Protection bits, as in mmap(2).
inline constexpr int kProtRead = 1, kProtWrite = 2, kProtExec = 4;

struct Vma {
    uint64_t start;
    uint64_t end;
    int prot;
    std::string name;  // "[heap]", "[stack]", a file name, or empty
    // Its pages are another address space's (a vfork child's view of its
    // parent's memory): unmapping it never frees or clears them.
    bool borrowed = false;
};

class AddressSpace {
public:
    // Layout of the user half, as Linux builds it without randomization.
    static constexpr uint64_t kStackTop = 0x7fff'ffff'f000ull;
    static constexpr uint64_t kStackMax = 8ull << 20;
    static constexpr uint64_t kMmapTop = kStackTop - kStackMax - (1ull << 30);
    static constexpr uint64_t kMmapMin = 0x10000;  // Linux's mmap_min_addr

    // With a page pool of its own: guest-physical [phys_begin, RAM's end).
    AddressSpace(GuestMemory& mem, uint64_t phys_begin)
        : mem_(&mem),
          own_alloc_(std::make_unique<PageAllocator>(phys_begin, mem.size())),
          alloc_(own_alloc_.get()),
          pt_(mem, *alloc_) {}
    // Drawing on `pool`, which other address spaces share (a thin VM's
    // processes) and which outlives this one.
    AddressSpace(GuestMemory& mem, PageAllocator& pool) : mem_(&mem), alloc_(&pool), pt_(mem, pool) {}
    AddressSpace(const AddressSpace&) = delete;
    AddressSpace& operator=(const AddressSpace&) = delete;

    Result<> init() { return pt_.init(); }

    // Maps [va, va+len) to fresh zero-filled pages, replacing what was there.
    Result<> map_fixed(uint64_t va, uint64_t len, int prot, std::string name = {});
    // A VMA over [va, va+len) whose pages are mapped on first touch
    // (fault_in), replacing what was there.
    Result<> map_lazy(uint64_t va, uint64_t len, int prot, std::string name = {});
    // Maps [va, va+len) to the existing guest-physical pages [pa, pa+len)
    // (a file region), replacing what was there. Those pages never return to
    // the pool.
    Result<> map_physical(uint64_t va, uint64_t len, uint64_t pa, int prot, std::string name = {});
    // A free, page-aligned range of `len` bytes below kMmapTop (top-down), or
    // at `hint` when that range is free. ENOMEM when none.
    Result<uint64_t> find_free(uint64_t len, uint64_t hint = 0) const;
    Result<> unmap(uint64_t va, uint64_t len);
    Result<> protect(uint64_t va, uint64_t len, int prot);
    // True when every page of the range belongs to some VMA.
    bool is_mapped(uint64_t va, uint64_t len) const;
    const Vma* find_vma(uint64_t va) const;

    // A forked child's memory (fork(2), copied eagerly: no copy-on-write),
    // into a new address space or a reset() one. Every page of `parent`'s
    // VMAs that holds data gets a page of its own here with the same
    // contents, except read-only file pages, which are shared; a page never
    // written is left unmapped, for fault_in on first touch. Leaves outside any VMA (the machine's system pages, the
    // entry code's) are shared too, unless `private_page(va)`: then copied into a page of this space's own (one it
    // already has there, when recycled). ENOMEM when the pool runs out (the caller then resets this space).
    // `share`: vfork's child instead (CLONE_VM|CLONE_VFORK): the VMAs' pages
    // are the parent's own, mapped here as they are there and marked
    // borrowed; the pages outside VMAs are handled as for a copy.
    Result<> copy_from(const AddressSpace& parent, const std::function<bool(uint64_t)>& private_page,
                       bool share = false);
    // A process ended: every VMA is unmapped and its pages go back to the
    // pool. The page tables and the leaves outside VMAs stay, for the next
    // process to reuse (intermediate tables are never freed: page_tables.h).
    Result<> reset() { return release(0, kUserAddressEnd); }

    // Writes into mapped pages regardless of their protection (the loader
    // filling read-only text); a VMA's page not touched yet is mapped
    // first. False if any page is outside every VMA.
    bool poke(uint64_t va, const void* data, uint64_t len);

    GuestVirtual view() const { return GuestVirtual(*mem_, pt_, const_cast<AddressSpace*>(this)); }
    // A page of a VMA that is not mapped yet (a forked child's pages that
    // were never written: copy_from leaves them to the first touch) gets a
    // zero page, when the VMA allows `access` (kProt* bits). False when
    // there is no such page, the access is not allowed, or the pool is out.
    bool fault_in(uint64_t va, int access);
    GuestMemory& memory() const { return *mem_; }
    PageTables& tables() { return pt_; }
    const PageTables& tables() const { return pt_; }
    PageAllocator& allocator() { return *alloc_; }
    const std::map<uint64_t, Vma>& vmas() const { return vmas_; }
    void restore_vmas(std::map<uint64_t, Vma> vmas) { vmas_ = std::move(vmas); }

    static uint64_t pte_flags(int prot);

private:
    // Splits VMAs so that `at` is a boundary.
    void split_at(uint64_t at);
    // Releases the pages of [va, va+len) and removes the VMAs there.
    Result<> release(uint64_t va, uint64_t len);

    GuestMemory* mem_;
    std::unique_ptr<PageAllocator> own_alloc_;  // null when the pool is shared
    PageAllocator* alloc_;
    PageTables pt_;
    std::map<uint64_t, Vma> vmas_;
};

}  // namespace vessel::memory
