// brk, mmap and friends over the VMM-owned address space.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <iterator>
#include <vector>

#include "thin/process.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

using memory::kPageMask;
using memory::kPageSize;
using memory::page_align_up;

constexpr uint64_t kUserEnd = 1ull << 47;

int prot_bits(uint64_t prot) { return static_cast<int>(prot & (PROT_READ | PROT_WRITE | PROT_EXEC)); }

// Page-rounded length, or 0 when it would overflow the user range.
uint64_t round_len(uint64_t len) { return len == 0 || len > kUserEnd ? 0 : page_align_up(len); }

// A mapping the address space refused, as the call's -errno; one refused
// for want of guest memory is counted (Process::out_of_memory).
int64_t refused(Process& p, const Error& e) {
    if (e.sys_errno == ENOMEM) p.note_out_of_memory();
    return -e.sys_errno;
}

// Is [va, va + len) inside the user range and free of mappings?
bool heap_room(Process& p, uint64_t va, uint64_t len) {
    if (va > kUserEnd || len > kUserEnd - va) return false;
    const auto& vmas = p.as().vmas();  // keyed by start
    auto after = vmas.lower_bound(va + len);
    return after == vmas.begin() || std::prev(after)->second.end <= va;
}

}  // namespace

// Heap pages mapped past the break, so that the entry code can grow the
// break into them without an exit (glibc's malloc grows it by 132 KiB and
// more at a time). They are fresh pages, zero as Linux's would be, unless
// the guest wrote past its own break.
constexpr uint64_t kHeapAhead = 256 * 1024;

bool grow_heap(Process& p, uint64_t top) {
    const uint64_t end = p.heap_end();
    if (!heap_room(p, end, top - end)) return false;
    uint64_t ahead = top + kHeapAhead;
    if (!heap_room(p, top, kHeapAhead) || !p.as().map_fixed(end, ahead - end, PROT_READ | PROT_WRITE, "[heap]")) {
        ahead = top;
        if (auto r = p.as().map_fixed(end, top - end, PROT_READ | PROT_WRITE, "[heap]"); !r) {
            (void)refused(p, r.error());
            return false;
        }
    }
    p.heap_end() = ahead;
    return true;
}

int64_t sys_brk(Process& p, BrkArgs a) {
    uint64_t want = a.addr();
    uint64_t cur = p.brk();
    if (want < p.brk_start() || want >= kUserEnd) return static_cast<int64_t>(cur);
    const uint64_t top = page_align_up(want);
    if (top > p.heap_end()) {
        if (!grow_heap(p, top)) return static_cast<int64_t>(cur);
    } else if (top < page_align_up(cur)) {
        // Linux frees the pages above the new break. Those mapped ahead go
        // too, so whatever grows the break again gets zero pages.
        (void)p.as().unmap(top, p.heap_end() - top);
        p.heap_end() = top;
    }
    p.brk() = want;
    return static_cast<int64_t>(want);
}

int64_t sys_mmap(Process& p, MmapArgs a) {
    uint64_t addr = a.addr(), len = round_len(a.length()), prot = a.prot(), flags = a.flags(), off = a.offset();
    int fd = a.fd();
    if (a.length() == 0 || off & kPageMask) return -EINVAL;
    if (!len) return -ENOMEM;
    if (prot & ~uint64_t(PROT_READ | PROT_WRITE | PROT_EXEC)) return -EINVAL;
    uint64_t type = flags & MAP_TYPE;
    if (type != MAP_PRIVATE && type != MAP_SHARED && type != MAP_SHARED_VALIDATE) return -EINVAL;
    bool anon = flags & MAP_ANONYMOUS;
    bool fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);

    std::shared_ptr<OpenFile> file;
    if (!anon) {
        auto* e = p.fds().get(fd);
        if (!e) return -EBADF;
        file = e->file;
        int fl = ::fcntl(file->host.get(), F_GETFL);
        if ((fl & O_ACCMODE) == O_WRONLY) return -EACCES;
        // A writable shared file mapping would need the guest's stores to reach
        // the file; a single-process guest has no use for it that we support.
        if (type != MAP_PRIVATE && (prot & PROT_WRITE)) return -ENODEV;
    }

    if (fixed) {
        if (addr & kPageMask) return -EINVAL;
        if (addr < memory::AddressSpace::kMmapMin) return -EPERM;
        if (addr > kUserEnd - len) return -ENOMEM;
        if ((flags & MAP_FIXED_NOREPLACE) && !(flags & MAP_FIXED))
            for (uint64_t va = addr; va < addr + len; va += kPageSize)
                if (p.as().find_vma(va)) return -EEXIST;
    } else {
        auto r = p.as().find_free(len, page_align_up(addr));
        if (!r) return -ENOMEM;
        addr = *r;
    }
    if (auto r = p.as().map_fixed(addr, len, prot_bits(prot), file ? file->guest_path : std::string()); !r)
        return refused(p, r.error());
    if (file) {
        // Private file mapping: a copy of the file's bytes; past EOF stays zero.
        uint64_t pos = off;
        bool ok = true;
        auto& as = p.as();
        std::vector<uint8_t> page(kPageSize);
        for (uint64_t va = addr; va < addr + len; va += kPageSize, pos += kPageSize) {
            ssize_t n = ::pread(file->host.get(), page.data(), kPageSize, static_cast<off_t>(pos));
            if (n < 0) {
                ok = false;
                break;
            }
            if (n == 0) break;
            as.poke(va, page.data(), static_cast<uint64_t>(n));
            if (n < static_cast<ssize_t>(kPageSize)) break;
        }
        if (!ok) {
            (void)p.as().unmap(addr, len);
            return -EIO;
        }
    }
    return static_cast<int64_t>(addr);
}

int64_t sys_munmap(Process& p, MunmapArgs a) {
    uint64_t len = round_len(a.length());
    if (a.addr() & kPageMask || !len || a.addr() > kUserEnd - len) return -EINVAL;
    // Nothing of the guest's lies below mmap_min_addr (Vessel's own pages
    // may): unmap the part of the range above it, as Linux unmaps whatever
    // the range covers.
    uint64_t addr = a.addr(), end = addr + len;
    if (end <= memory::AddressSpace::kMmapMin) return 0;
    addr = std::max(addr, memory::AddressSpace::kMmapMin);
    auto r = p.as().unmap(addr, end - addr);
    return r ? 0 : -r.error().sys_errno;
}

int64_t sys_mprotect(Process& p, MprotectArgs a) {
    uint64_t len = page_align_up(a.length());
    if (a.addr() & kPageMask || a.length() > kUserEnd) return -EINVAL;
    if (a.prot() & ~uint64_t(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_GROWSDOWN | PROT_GROWSUP)) return -EINVAL;
    if (len == 0) return 0;
    if (a.addr() > kUserEnd - len || !p.as().is_mapped(a.addr(), len)) return -ENOMEM;
    auto r = p.as().protect(a.addr(), len, prot_bits(a.prot()));
    return r ? 0 : -r.error().sys_errno;
}

int64_t sys_mremap(Process& p, MremapArgs a) {
    uint64_t old_addr = a.old_addr(), old_len = page_align_up(a.old_size()), new_len = round_len(a.new_size());
    uint64_t flags = a.flags();
    if (old_addr & kPageMask || flags & ~uint64_t(MREMAP_MAYMOVE | MREMAP_FIXED)) return -EINVAL;
    if ((flags & MREMAP_FIXED) && !(flags & MREMAP_MAYMOVE)) return -EINVAL;
    if (!new_len || !old_len || a.old_size() > kUserEnd) return -EINVAL;
    if (old_addr > kUserEnd - old_len || !p.as().is_mapped(old_addr, old_len)) return -EFAULT;
    const memory::Vma* vma = p.as().find_vma(old_addr);
    int prot = vma->prot;
    std::string name = vma->name;
    if (!(flags & MREMAP_FIXED)) {
        if (new_len <= old_len) {
            if (new_len < old_len) (void)p.as().unmap(old_addr + new_len, old_len - new_len);
            return static_cast<int64_t>(old_addr);
        }
        // Room to grow in place: no VMA in [old end, new end). One look-up
        // of the next VMA, not one per page: a guest may ask for terabytes.
        const uint64_t old_end = old_addr + old_len, new_end = old_addr + new_len;
        bool room = new_end <= kUserEnd && !p.as().find_vma(old_end);
        if (room) {
            auto next = p.as().vmas().lower_bound(old_end);
            room = next == p.as().vmas().end() || next->second.start >= new_end;
        }
        if (room) {
            if (auto r = p.as().map_fixed(old_addr + old_len, new_len - old_len, prot, name); !r)
                return refused(p, r.error());
            return static_cast<int64_t>(old_addr);
        }
        if (!(flags & MREMAP_MAYMOVE)) return -ENOMEM;
    }
    uint64_t dest;
    if (flags & MREMAP_FIXED) {
        dest = a.new_addr();
        if (dest & kPageMask || dest > kUserEnd - new_len) return -EINVAL;
        if (dest < old_addr + old_len && old_addr < dest + new_len) return -EINVAL;
    } else {
        auto r = p.as().find_free(new_len);
        if (!r) return -ENOMEM;
        dest = *r;
    }
    if (auto r = p.as().map_fixed(dest, new_len, prot | PROT_WRITE, name); !r) return refused(p, r.error());
    // Copy through the VMM (protection ignored), then drop the old range.
    std::vector<uint8_t> page(kPageSize);
    auto view = p.as().view();
    for (uint64_t off = 0; off < std::min(old_len, new_len); off += kPageSize) {
        uint64_t e = p.as().tables().leaf(old_addr + off);
        uint8_t* src = p.as().memory().host(e & memory::pte::kAddrMask, kPageSize);
        if (src) p.as().poke(dest + off, src, kPageSize);
    }
    (void)view;
    (void)p.as().unmap(old_addr, old_len);
    if (!(prot & PROT_WRITE)) (void)p.as().protect(dest, new_len, prot);
    return static_cast<int64_t>(dest);
}

namespace {

// The advice values Linux accepts (mm/madvise.c, madvise_behavior_valid);
// all but DONTNEED/FREE are hints this layer may ignore.
bool known_advice(uint64_t advice) {
    switch (advice) {
        case MADV_NORMAL:
        case MADV_RANDOM:
        case MADV_SEQUENTIAL:
        case MADV_WILLNEED:
        case MADV_DONTNEED:
        case MADV_FREE:
        case MADV_REMOVE:
        case MADV_DONTFORK:
        case MADV_DOFORK:
        case MADV_MERGEABLE:
        case MADV_UNMERGEABLE:
        case MADV_HUGEPAGE:
        case MADV_NOHUGEPAGE:
        case MADV_DONTDUMP:
        case MADV_DODUMP:
        case MADV_WIPEONFORK:
        case MADV_KEEPONFORK:
        case MADV_COLD:
        case MADV_PAGEOUT:
        case 22 /* POPULATE_READ */:
        case 23 /* POPULATE_WRITE */:
        case 24 /* DONTNEED_LOCKED */:
        case 25 /* COLLAPSE */: return true;
        default: return false;
    }
}

}  // namespace

int64_t sys_madvise(Process& p, MadviseArgs a) {
    if (a.addr() & kPageMask || !known_advice(a.advice())) return -EINVAL;
    uint64_t len = page_align_up(a.length());
    if (a.length() && !len) return -EINVAL;  // wrapped while rounding up
    if (len == 0) return 0;
    if (a.addr() > kUserEnd - len) return -EINVAL;
    if (a.advice() == MADV_DONTNEED || a.advice() == MADV_FREE) {
        if (!p.as().is_mapped(a.addr(), len)) return -ENOMEM;
        // Anonymous private memory reads back as zeros after DONTNEED.
        for (uint64_t va = a.addr(); va < a.addr() + len; va += kPageSize) {
            uint64_t e = p.as().tables().leaf(va);
            if (e & memory::pte::kPresent) (void)p.as().memory().discard(e & memory::pte::kAddrMask, kPageSize);
        }
    }
    return 0;
}

}  // namespace vessel::thin
