#include "memory/guest_memory.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace vessel::memory {

namespace {

// Address space kept free after RAM for a program image (create()).
constexpr uint64_t kRegionHeadroom = 512ull << 20;

}  // namespace

Result<GuestMemory> GuestMemory::create(uint64_t size, const char* name) {
    if (size == 0 || size > (1ull << 46)) return fail("guest memory size out of range");
    size = page_align_up(size);
    int raw = ::memfd_create(name, MFD_CLOEXEC);
    if (raw < 0) return fail_errno("memfd_create");
    GuestMemory m;
    m.fd_.reset(raw);
    if (::ftruncate(raw, static_cast<off_t>(size)) < 0) return fail_errno("ftruncate(guest memory)");
    // RAM, then address space (no memory) for a program image to follow it.
    void* span = ::mmap(nullptr, size + kRegionHeadroom, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (span == MAP_FAILED) return fail_errno("mmap of " + std::to_string(size >> 20) + " MiB guest memory");
    m.headroom_ = Mapping(span, size + kRegionHeadroom);
    Mapping ram = m.headroom_.take_front(size);
    if (::mmap(ram.data(), size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE | MAP_FIXED, raw, 0) == MAP_FAILED)
        return fail_errno("mmap of " + std::to_string(size >> 20) + " MiB guest memory");
    m.map_ = std::move(ram);
    return m;
}

Result<GuestMemory> GuestMemory::from_image(Fd image_fd, uint64_t ram_size, const std::vector<RegionSpec>& regions) {
    if (ram_size == 0 || ram_size & kPageMask) return fail("memory image: bad RAM size", EINVAL);
    GuestMemory m;
    m.image_backed_ = true;
    void* p = ::mmap(nullptr, ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, image_fd.get(), 0);
    if (p == MAP_FAILED) return fail_errno("mmap(memory image)");
    m.map_ = Mapping(p, ram_size);
    uint64_t end = ram_size;
    for (const auto& r : regions) {
        if (r.gpa < end || r.gpa & kPageMask || r.size == 0 || r.size & kPageMask)
            return fail("memory image: bad region layout", EINVAL);
        void* q = ::mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, image_fd.get(),
                         static_cast<off_t>(r.gpa));
        if (q == MAP_FAILED) return fail_errno("mmap(memory image region)");
        m.regions_.push_back({r.gpa, Mapping(q, r.size)});
        end = r.gpa + r.size;
    }
    m.fd_ = std::move(image_fd);
    return m;
}

uint64_t GuestMemory::resident_bytes() const {
    auto resident = [](const uint8_t* base, uint64_t size) {
        std::vector<unsigned char> vec(size / kPageSize);
        uint64_t pages = 0;
        if (::mincore(const_cast<uint8_t*>(base), size, vec.data()) == 0)
            for (unsigned char c : vec) pages += c & 1;
        return pages * kPageSize;
    };
    uint64_t total = resident(map_.data(), map_.size());
    for (const auto& r : regions_) total += resident(r.map.data(), r.map.size());
    return total;
}

void GuestMemory::start_dirty_tracking() {
    uint64_t pages = phys_end() >> 12;
    dirty_.assign((pages + 63) / 64 + 1, 0);
}

void GuestMemory::merge_dirty_bitmap(uint64_t base_gpa, const std::vector<uint64_t>& bitmap) {
    for (size_t w = 0; w < bitmap.size(); ++w)
        for (uint64_t bits = bitmap[w]; bits; bits &= bits - 1) {
            uint64_t page = (base_gpa >> 12) + w * 64 + static_cast<uint64_t>(__builtin_ctzll(bits));
            if ((page >> 6) < dirty_.size()) dirty_[page >> 6] |= 1ull << (page & 63);
        }
}

std::vector<uint64_t> GuestMemory::take_dirty() {
    std::vector<uint64_t> pages;
    for (size_t w = 0; w < dirty_.size(); ++w) {
        for (uint64_t bits = dirty_[w]; bits; bits &= bits - 1)
            pages.push_back((w * 64 + static_cast<uint64_t>(__builtin_ctzll(bits))) << 12);
        dirty_[w] = 0;
    }
    return pages;
}

Result<> GuestMemory::read(uint64_t gpa, void* out, uint64_t len) const {
    if (!contains(gpa, len)) return fail("guest physical read outside RAM", EFAULT);
    std::memcpy(out, map_.data() + gpa, len);
    return {};
}

Result<> GuestMemory::write(uint64_t gpa, const void* in, uint64_t len) {
    if (!contains(gpa, len)) return fail("guest physical write outside RAM", EFAULT);
    std::memcpy(map_.data() + gpa, in, len);
    note_write(gpa, len);
    return {};
}

Result<> GuestMemory::discard(uint64_t gpa, uint64_t len) {
    if (!contains(gpa, len) || (gpa | len) & kPageMask) return fail("discard: bad range", EINVAL);
    if (len == 0) return {};
    note_write(gpa, len);
    if (image_backed_) {
        // A private image mapping would fall back to the image's bytes, not
        // zeros: clear the pages instead. A page already copied does not
        // copy again, so nothing would tell KVM, which may still hold a
        // translation through the leaf the caller just removed: fire the
        // MMU notifier as invalidate() does (an exec after a restore ran
        // its new program through the old program's translations).
        std::memset(map_.data() + gpa, 0, len);
        return invalidate(gpa, len);
    }
    if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(gpa),
                    static_cast<off_t>(len)) < 0)
        return fail_errno("fallocate(punch hole)");
    return {};
}

std::vector<std::pair<uint64_t, uint64_t>> GuestMemory::data_ranges() const {
    const off_t end = static_cast<off_t>(size());
    if (image_backed_) return {{0, size()}};
    std::vector<std::pair<uint64_t, uint64_t>> ranges;
    for (off_t at = 0; at < end;) {
        const off_t data = ::lseek(fd_.get(), at, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) break;  // only a hole from here on
            return {{0, size()}};
        }
        off_t hole = ::lseek(fd_.get(), data, SEEK_HOLE);
        if (hole < 0) return {{0, size()}};
        hole = std::min(hole, end);
        ranges.emplace_back(static_cast<uint64_t>(data), static_cast<uint64_t>(hole));
        at = hole;
    }
    return ranges;
}

Result<uint64_t> GuestMemory::add_file_region(int fd, uint64_t size, uint64_t offset) {
    if (size == 0) return fail("empty file region", EINVAL);
    if (offset & kPageMask) return fail("file region offset not page-aligned", EINVAL);
    size = page_align_up(size);
    uint64_t gpa = phys_end();
    gpa = (gpa + (2ull << 20) - 1) & ~((2ull << 20) - 1);
    Mapping map;
    if (headroom_.valid() && host_base() + gpa == headroom_.data() && size <= headroom_.size()) {
        map = headroom_.take_front(size);  // next to RAM: one KVM slot for both
        if (::mmap(map.data(), size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, static_cast<off_t>(offset)) ==
            MAP_FAILED)
            return fail_errno("mmap(program image)");
    } else {
        void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, static_cast<off_t>(offset));
        if (p == MAP_FAILED) return fail_errno("mmap(program image)");
        map = Mapping(p, size);
    }
    regions_.push_back({gpa, std::move(map)});
    return gpa;
}

std::vector<GuestMemory::Slot> GuestMemory::kvm_slots() const {
    std::vector<Slot> slots{{0, size(), host_base()}};
    for (const auto& r : regions_) {
        Slot& last = slots.back();
        if (r.gpa == last.gpa + last.size && r.map.data() == last.host + last.size)
            last.size += r.map.size();
        else
            slots.push_back({r.gpa, r.map.size(), r.map.data()});
    }
    return slots;
}

Result<> GuestMemory::invalidate(uint64_t gpa, uint64_t len) {
    if ((gpa | len) & kPageMask) return fail("invalidate: bad range", EINVAL);
    if (len == 0) return {};
    uint8_t* p = host(gpa, len);
    if (!p) return fail("invalidate: bad range", EINVAL);
    // RAM shared with the memfd: dropping the VMM's own page-table entries
    // fires the MMU notifier for exactly these pages, and KVM zaps their
    // translations; the contents stay in the memfd. (mprotect would split
    // the RAM mapping, and a split fires the notifier for the whole 2 MiB
    // around each end, zapping every translation there.)
    if (!image_backed_ && contains(gpa, len)) {
        if (::madvise(p, len, MADV_DONTNEED) < 0) return fail_errno("madvise(invalidate)");
        return {};
    }
    // Private mappings (file regions, RAM restored copy-on-write) would lose
    // their written pages that way. Changing the protection of the VMM's
    // mapping fires the notifier too; restoring it lets the VMAs merge.
    if (::mprotect(p, len, PROT_READ) < 0) return fail_errno("mprotect(invalidate)");
    if (::mprotect(p, len, PROT_READ | PROT_WRITE) < 0) return fail_errno("mprotect(restore)");
    return {};
}

}  // namespace vessel::memory
