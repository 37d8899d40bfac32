#include "memory/page_tables.h"

#include <algorithm>

namespace vessel::memory {
namespace {

constexpr uint64_t kTableFlags = pte::kPresent | pte::kWrite | pte::kUser;

unsigned index_at(uint64_t va, int level) { return (va >> (12 + 9 * level)) & 0x1ff; }

}  // namespace

Result<> PageTables::init() {
    auto p = alloc_->allocate();
    if (!p) return fail("guest memory too small for page tables", ENOMEM);
    std::memset(mem_->host(*p, kPageSize), 0, kPageSize);
    root_ = *p;
    last_leaf_table_ = nullptr;
    return {};
}

uint64_t* PageTables::entry_ptr(uint64_t table, unsigned index) const {
    auto* t = reinterpret_cast<uint64_t*>(mem_->host(table, kPageSize));
    return t ? &t[index] : nullptr;
}

void PageTables::note_entry_write(const uint64_t* entry) const {
    if (!mem_->dirty_tracking()) return;
    // Entries live in RAM; recover the page from the host pointer.
    uint64_t off = static_cast<uint64_t>(reinterpret_cast<const uint8_t*>(entry) - mem_->host_base());
    mem_->note_write(off & ~kPageMask, kPageSize);
}

uint64_t* PageTables::walk(uint64_t va, bool create) {
    if (last_leaf_table_ && va >> 21 == last_leaf_span_) return &last_leaf_table_[index_at(va, 0)];
    uint64_t table = root_;
    for (int level = 3; level > 0; --level) {
        uint64_t* e = entry_ptr(table, index_at(va, level));
        if (!e) return nullptr;
        if (!(*e & pte::kPresent)) {
            if (!create) return nullptr;
            auto p = alloc_->allocate();
            if (!p) return nullptr;
            std::memset(mem_->host(*p, kPageSize), 0, kPageSize);
            mem_->note_write(*p, kPageSize);
            *e = *p | kTableFlags;
            note_entry_write(e);
        }
        if (*e & pte::kHuge) return nullptr;
        table = *e & pte::kAddrMask;
    }
    uint64_t* leaf_table = entry_ptr(table, 0);
    if (!leaf_table) return nullptr;
    last_leaf_table_ = leaf_table;
    last_leaf_span_ = va >> 21;
    return &leaf_table[index_at(va, 0)];
}

Result<> PageTables::map(uint64_t va, uint64_t pa, uint64_t flags) {
    if (va >= kUserAddressEnd || (va | pa) & kPageMask || !mem_->host(pa, kPageSize))
        return fail("page table: bad mapping", EINVAL);
    uint64_t* e = walk(va, true);
    if (!e) return fail("guest memory exhausted (page tables)", ENOMEM);
    *e = pa | flags | pte::kPresent;
    note_entry_write(e);
    return {};
}

Result<> PageTables::map_run(uint64_t va, uint64_t pa, uint64_t pages, uint64_t flags) {
    const uint64_t len = pages * kPageSize;
    if (pages > kUserAddressEnd / kPageSize || va >= kUserAddressEnd || len > kUserAddressEnd - va ||
        (va | pa) & kPageMask || !mem_->host(pa, len))
        return fail("page table: bad mapping", EINVAL);
    for (uint64_t done = 0; done < pages;) {
        uint64_t* e = walk(va + done * kPageSize, true);
        if (!e) return fail("guest memory exhausted (page tables)", ENOMEM);
        // The rest of this leaf table, at most.
        const uint64_t n = std::min<uint64_t>(pages - done, 512 - index_at(va + done * kPageSize, 0));
        for (uint64_t i = 0; i < n; ++i) e[i] = (pa + (done + i) * kPageSize) | flags | pte::kPresent;
        note_entry_write(e);
        done += n;
    }
    return {};
}

std::optional<uint64_t> PageTables::unmap(uint64_t va) {
    if (va >= kUserAddressEnd) return std::nullopt;
    uint64_t* e = walk(va, false);
    if (!e || !(*e & pte::kPresent)) return std::nullopt;
    uint64_t pa = *e & pte::kAddrMask;
    *e = 0;
    note_entry_write(e);
    return pa;
}

uint64_t PageTables::leaf(uint64_t va) const {
    if (va >= kUserAddressEnd) return 0;
    uint64_t* e = const_cast<PageTables*>(this)->walk(va, false);
    return e ? *e : 0;
}

bool PageTables::set_flags(uint64_t va, uint64_t flags) {
    if (va >= kUserAddressEnd) return false;
    uint64_t* e = walk(va, false);
    if (!e || !(*e & pte::kPresent)) return false;
    *e = (*e & pte::kAddrMask) | flags | pte::kPresent;
    note_entry_write(e);
    return true;
}

std::optional<uint64_t> PageTables::translate(uint64_t va, bool write) const {
    uint64_t e = leaf(va);
    if (!(e & pte::kPresent) || !(e & pte::kUser)) return std::nullopt;
    if (write && !(e & pte::kWrite)) return std::nullopt;
    return (e & pte::kAddrMask) | (va & kPageMask);
}

void PageTables::for_each_leaf(const std::function<void(uint64_t, uint64_t)>& f) const {
    auto table_at = [&](uint64_t pa) { return reinterpret_cast<const uint64_t*>(mem_->host(pa, kPageSize)); };
    const uint64_t* l4 = table_at(root_);
    if (!l4) return;
    for (unsigned i4 = 0; i4 < 256; ++i4) {
        if (!(l4[i4] & pte::kPresent)) continue;
        const uint64_t* l3 = table_at(l4[i4] & pte::kAddrMask);
        for (unsigned i3 = 0; l3 && i3 < 512; ++i3) {
            if (!(l3[i3] & pte::kPresent) || (l3[i3] & pte::kHuge)) continue;
            const uint64_t* l2 = table_at(l3[i3] & pte::kAddrMask);
            for (unsigned i2 = 0; l2 && i2 < 512; ++i2) {
                if (!(l2[i2] & pte::kPresent) || (l2[i2] & pte::kHuge)) continue;
                const uint64_t* l1 = table_at(l2[i2] & pte::kAddrMask);
                for (unsigned i1 = 0; l1 && i1 < 512; ++i1)
                    if (l1[i1] & pte::kPresent)
                        f((uint64_t(i4) << 39) | (uint64_t(i3) << 30) | (uint64_t(i2) << 21) | (uint64_t(i1) << 12),
                          l1[i1]);
            }
        }
    }
}

}  // namespace vessel::memory
