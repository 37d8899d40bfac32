#include "memory/guest_memory.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>

namespace vessel::memory {

Result<GuestMemory> GuestMemory::create(uint64_t size, const char* name) {
    if (size == 0 || size > (1ull << 46)) return fail("guest memory size out of range");
    size = page_align_up(size);
    int raw = ::memfd_create(name, MFD_CLOEXEC);
    if (raw < 0) return fail_errno("memfd_create");
    GuestMemory m;
    m.fd_.reset(raw);
    if (::ftruncate(raw, static_cast<off_t>(size)) < 0) return fail_errno("ftruncate(guest memory)");
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, raw, 0);
    if (p == MAP_FAILED)
        return fail_errno("mmap of " + std::to_string(size >> 20) + " MiB guest memory");
    m.map_ = Mapping(p, size);
    return m;
}

Result<> GuestMemory::read(uint64_t gpa, void* out, uint64_t len) const {
    if (!contains(gpa, len)) return fail("guest physical read outside RAM", EFAULT);
    std::memcpy(out, map_.data() + gpa, len);
    return {};
}

Result<> GuestMemory::write(uint64_t gpa, const void* in, uint64_t len) {
    if (!contains(gpa, len)) return fail("guest physical write outside RAM", EFAULT);
    std::memcpy(map_.data() + gpa, in, len);
    return {};
}

Result<> GuestMemory::discard(uint64_t gpa, uint64_t len) {
    if (!contains(gpa, len) || (gpa | len) & kPageMask) return fail("discard: bad range", EINVAL);
    if (len == 0) return {};
    if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(gpa),
                    static_cast<off_t>(len)) < 0)
        return fail_errno("fallocate(punch hole)");
    return {};
}

Result<uint64_t> GuestMemory::add_file_region(int fd, uint64_t size) {
    if (size == 0) return fail("empty file region", EINVAL);
    size = page_align_up(size);
    uint64_t gpa = (regions_.empty() ? this->size() : regions_.back().gpa + regions_.back().map.size());
    gpa = (gpa + (2ull << 20) - 1) & ~((2ull << 20) - 1);
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return fail_errno("mmap(program image)");
    regions_.push_back({gpa, Mapping(p, size)});
    return gpa;
}

Result<> GuestMemory::invalidate(uint64_t gpa, uint64_t len) {
    if ((gpa | len) & kPageMask) return fail("invalidate: bad range", EINVAL);
    if (len == 0) return {};
    uint8_t* p = host(gpa, len);
    if (!p) return fail("invalidate: bad range", EINVAL);
    // Changing the protection of the VMM's mapping fires the MMU notifier, and
    // KVM zaps every translation of these pages. Restoring it lets the VMAs merge.
    if (::mprotect(p, len, PROT_READ) < 0) return fail_errno("mprotect(invalidate)");
    if (::mprotect(p, len, PROT_READ | PROT_WRITE) < 0) return fail_errno("mprotect(restore)");
    return {};
}

}  // namespace vessel::memory
