#include "memory/address_space.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace vessel::memory {
namespace {

bool range_ok(uint64_t va, uint64_t len) {
    return len && !((va | len) & kPageMask) && va >= AddressSpace::kMmapMin && len <= kUserAddressEnd &&
           va <= kUserAddressEnd - len;
}

// Applies f(start, len) to maximal runs of contiguous guest-physical pages.
template <class F>
Result<> for_each_run(std::vector<uint64_t>& pages, F&& f) {
    std::sort(pages.begin(), pages.end());
    for (size_t i = 0; i < pages.size();) {
        size_t j = i + 1;
        while (j < pages.size() && pages[j] == pages[j - 1] + kPageSize) ++j;
        if (auto r = f(pages[i], (j - i) * kPageSize); !r) return r;
        i = j;
    }
    return {};
}

}  // namespace

uint64_t AddressSpace::pte_flags(int prot) {
    uint64_t f = pte::kPresent | pte::kAccessed;
    if (prot & (kProtRead | kProtWrite | kProtExec)) f |= pte::kUser;
    if (prot & kProtWrite) f |= pte::kWrite | pte::kDirty;
    if (!(prot & kProtExec)) f |= pte::kNoExec;
    return f;
}

void AddressSpace::split_at(uint64_t at) {
    auto it = vmas_.upper_bound(at);
    if (it == vmas_.begin()) return;
    --it;
    Vma& v = it->second;
    if (v.start < at && at < v.end) {
        Vma tail = v;
        tail.start = at;
        v.end = at;
        vmas_.emplace(at, std::move(tail));
    }
}

Result<> AddressSpace::release(uint64_t va, uint64_t len) {
    split_at(va);
    split_at(va + len);
    std::vector<uint64_t> pages, region_pages;
    for (auto it = vmas_.lower_bound(va); it != vmas_.end() && it->first < va + len;) {
        const bool borrowed = it->second.borrowed;  // the parent's pages: only forgotten here
        for (uint64_t p = it->second.start; p < it->second.end; p += kPageSize)
            if (auto pa = pt_.unmap(p))
                (mem_->contains(*pa, kPageSize) && !borrowed ? pages : region_pages).push_back(*pa);
        it = vmas_.erase(it);
    }
    // Punching RAM pages zeroes them for reuse and drops KVM's translations of
    // the old mapping in one step. File-region pages keep their contents.
    auto r = for_each_run(pages, [&](uint64_t pa, uint64_t n) { return mem_->discard(pa, n); });
    for (uint64_t pa : pages) alloc_->free(pa);
    if (!r) return r;
    return for_each_run(region_pages, [&](uint64_t pa, uint64_t n) { return mem_->invalidate(pa, n); });
}

Result<> AddressSpace::map_fixed(uint64_t va, uint64_t len, int prot, std::string name) {
    if (!range_ok(va, len)) return fail("mmap: bad range", EINVAL);
    if (auto r = release(va, len); !r) return r;
    uint64_t pages = len / kPageSize;
    // Page-table pages come from the same pool: leave headroom for them.
    if (alloc_->pages_free() < pages + pages / 512 + 4) return fail("guest memory exhausted", ENOMEM);
    uint64_t flags = pte_flags(prot);
    if (auto run = alloc_->allocate_run(pages)) {  // fresh pages, one contiguous run
        if (auto r = pt_.map_run(va, *run, pages, flags); !r) {
            for (uint64_t off = 0; off < len; off += kPageSize) {
                (void)pt_.unmap(va + off);
                alloc_->free(*run + off);
            }
            return r;
        }
        vmas_.emplace(va, Vma{va, va + len, prot, std::move(name)});
        return {};
    }
    for (uint64_t off = 0; off < len; off += kPageSize) {
        auto pa = alloc_->allocate();
        if (!pa) {
            (void)release(va, off);
            return fail("guest memory exhausted", ENOMEM);
        }
        if (auto r = pt_.map(va + off, *pa, flags); !r) {
            alloc_->free(*pa);
            vmas_.emplace(va, Vma{va, va + off, prot, name});
            (void)release(va, off);
            return r;
        }
    }
    vmas_.emplace(va, Vma{va, va + len, prot, std::move(name)});
    return {};
}

Result<> AddressSpace::copy_from(const AddressSpace& parent, const std::function<bool(uint64_t)>& private_page,
                                 bool share) {
    const auto data = mem_->data_ranges();
    auto holds_data = [&](uint64_t pa) {
        auto it = std::upper_bound(data.begin(), data.end(), std::pair{pa, UINT64_MAX});
        return it != data.begin() && pa < std::prev(it)->second;
    };
    Result<> result;
    parent.pt_.for_each_leaf([&](uint64_t va, uint64_t leaf) {
        if (!result) return;
        const uint64_t pa = leaf & pte::kAddrMask, flags = leaf & ~pte::kAddrMask & ~pte::kPresent;
        const Vma* vma = parent.find_vma(va);
        const bool ram = mem_->contains(pa, kPageSize);
        const bool copy = vma ? !share && (ram || (vma->prot & kProtWrite)) : private_page(va);
        if (!copy) {
            // The same page and rights already (the CPU's accessed and dirty
            // bits aside): a recycled space's leaf stays as it is.
            if ((pt_.leaf(va) ^ leaf) & ~(pte::kAccessed | pte::kDirty)) result = pt_.map(va, pa, flags);
            return;
        }
        if (vma && ram && !holds_data(pa)) return;  // zeros: mapped on first touch (fault_in)
        // A recycled space keeps its own pages outside VMAs.
        const uint64_t have = vma ? 0 : pt_.leaf(va);
        uint64_t to = have & pte::kAddrMask;
        if (!have) {
            auto page = alloc_->allocate();
            if (!page) {
                result = fail("guest memory exhausted", ENOMEM);
                return;
            }
            to = *page;
            if (auto r = pt_.map(va, to, flags); !r) {
                alloc_->free(to);
                result = r;
                return;
            }
        }
        if (vma || !ram || holds_data(pa)) {
            std::memcpy(mem_->host(to, kPageSize), mem_->host(pa, kPageSize), kPageSize);
            mem_->note_write(to, kPageSize);
        }
    });
    if (!result) return result;
    vmas_ = parent.vmas_;
    if (share)
        for (auto& [start, v] : vmas_) v.borrowed = true;
    return {};
}

Result<> AddressSpace::map_lazy(uint64_t va, uint64_t len, int prot, std::string name) {
    if (!range_ok(va, len)) return fail("mmap: bad range", EINVAL);
    if (auto r = release(va, len); !r) return r;
    vmas_.emplace(va, Vma{va, va + len, prot, std::move(name)});
    return {};
}

bool AddressSpace::fault_in(uint64_t va, int access) {
    const Vma* vma = find_vma(va);
    if (!vma || (access & ~vma->prot) || (pt_.leaf(va) & pte::kPresent)) return false;
    auto page = alloc_->allocate();  // a zero page: the pool's pages are discarded when freed
    if (!page) return false;
    if (!pt_.map(page_align_down(va), *page, pte_flags(vma->prot))) {
        alloc_->free(*page);
        return false;
    }
    return true;
}

Result<> AddressSpace::map_physical(uint64_t va, uint64_t len, uint64_t pa, int prot, std::string name) {
    if (!range_ok(va, len) || pa & kPageMask || !mem_->host(pa, len)) return fail("map_physical: bad range", EINVAL);
    if (auto r = release(va, len); !r) return r;
    if (auto r = pt_.map_run(va, pa, len / kPageSize, pte_flags(prot)); !r) {
        vmas_.emplace(va, Vma{va, va + len, prot, name});
        (void)release(va, len);
        return r;
    }
    vmas_.emplace(va, Vma{va, va + len, prot, std::move(name)});
    return {};
}

Result<uint64_t> AddressSpace::find_free(uint64_t len, uint64_t hint) const {
    if (!len || len & kPageMask || len > kMmapTop) return fail("mmap: bad length", EINVAL);
    auto free_at = [&](uint64_t a) {
        if (a < kMmapMin || a > kUserAddressEnd - len) return false;
        auto it = vmas_.lower_bound(a + len);
        if (it == vmas_.begin()) return true;
        --it;
        return it->second.end <= a;
    };
    if (hint && !(hint & kPageMask) && free_at(hint)) return hint;
    // Top-down: walk the gaps between VMAs from kMmapTop downwards.
    uint64_t top = kMmapTop;
    auto it = vmas_.lower_bound(top);
    while (true) {
        uint64_t floor = kMmapMin;
        if (it != vmas_.begin()) floor = std::prev(it)->second.end;
        if (floor < top && top - floor >= len) return top - len;
        if (it == vmas_.begin()) break;
        --it;
        top = std::min(top, it->second.start);
    }
    return fail("no free address range", ENOMEM);
}

Result<> AddressSpace::unmap(uint64_t va, uint64_t len) {
    if (!range_ok(va, len)) return fail("munmap: bad range", EINVAL);
    return release(va, len);
}

Result<> AddressSpace::protect(uint64_t va, uint64_t len, int prot) {
    if (!range_ok(va, len)) return fail("mprotect: bad range", EINVAL);
    if (!is_mapped(va, len)) return fail("mprotect: range not mapped", ENOMEM);
    split_at(va);
    split_at(va + len);
    uint64_t flags = pte_flags(prot);
    std::vector<uint64_t> pages;
    for (auto it = vmas_.lower_bound(va); it != vmas_.end() && it->first < va + len; ++it) {
        it->second.prot = prot;
        for (uint64_t p = it->second.start; p < it->second.end; p += kPageSize) {
            uint64_t old = pt_.leaf(p);
            if (!(old & pte::kPresent) || old == (((old & pte::kAddrMask)) | flags)) continue;  // absent: fault_in
            pt_.set_flags(p, flags);
            pages.push_back(old & pte::kAddrMask);
        }
    }
    return for_each_run(pages, [&](uint64_t pa, uint64_t n) { return mem_->invalidate(pa, n); });
}

bool AddressSpace::poke(uint64_t va, const void* data, uint64_t len) {
    auto* src = static_cast<const uint8_t*>(data);
    while (len) {
        uint64_t e = pt_.leaf(va);
        if (!(e & pte::kPresent) && fault_in(va, 0)) e = pt_.leaf(va);
        if (!(e & pte::kPresent)) return false;
        uint64_t chunk = std::min<uint64_t>(len, kPageSize - (va & kPageMask));
        uint64_t pa = (e & pte::kAddrMask) | (va & kPageMask);
        uint8_t* h = mem_->host(pa, chunk);
        if (!h) return false;
        std::memcpy(h, src, chunk);
        mem_->note_write(pa, chunk);
        src += chunk;
        va += chunk;
        len -= chunk;
    }
    return true;
}

bool AddressSpace::is_mapped(uint64_t va, uint64_t len) const {
    uint64_t end = va + len;
    if (end < va) return false;
    while (va < end) {
        const Vma* v = find_vma(va);
        if (!v) return false;
        va = v->end;
    }
    return true;
}

const Vma* AddressSpace::find_vma(uint64_t va) const {
    auto it = vmas_.upper_bound(va);
    if (it == vmas_.begin()) return nullptr;
    --it;
    return va < it->second.end ? &it->second : nullptr;
}

}  // namespace vessel::memory
