// Bounds- and permission-checked access to guest virtual memory.
//
// Everything a guest passes by pointer goes through here: each page is
// translated through the guest's page tables with the rights the guest itself
// would need, so a bad pointer becomes EFAULT, never a VMM crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "memory/guest_memory.h"
#include "memory/page_tables.h"

namespace vessel::memory {

class AddressSpace;

class GuestVirtual {
public:
    // `lazy`: the address space whose untouched pages are mapped on first
    // access (AddressSpace::fault_in), as the guest's own faults map them.
    GuestVirtual(GuestMemory& mem, const PageTables& pt, AddressSpace* lazy = nullptr)
        : mem_(&mem), pt_(&pt), lazy_(lazy) {}

    // All return false on any unmapped or non-permitted byte (nothing partial
    // is reported; a write may have been applied up to the failing page).
    bool read(uint64_t va, void* out, uint64_t len) const;
    bool write(uint64_t va, const void* in, uint64_t len) const;
    bool fill(uint64_t va, uint8_t byte, uint64_t len) const;
    // NUL-terminated string of at most `max` bytes (excluding the NUL).
    // Fails with EFAULT on a bad pointer, ENAMETOOLONG when longer than max.
    Result<std::string> read_cstring(uint64_t va, uint64_t max) const;

    template <class T>
    bool read_obj(uint64_t va, T& out) const {
        return read(va, &out, sizeof(T));
    }
    template <class T>
    bool write_obj(uint64_t va, const T& in) const {
        return write(va, &in, sizeof(T));
    }

    // Calls f(host_ptr, len) for each page-sized piece; false on a fault.
    template <class F>
    bool for_each_chunk(uint64_t va, uint64_t len, bool write, F&& f) const {
        if (len > kUserAddressEnd || va > kUserAddressEnd - len) return false;
        while (len) {
            auto pa = translate(va, write);
            if (!pa) return false;
            uint64_t chunk = std::min<uint64_t>(len, kPageSize - (va & kPageMask));
            uint8_t* h = mem_->host(*pa, chunk);
            if (!h) return false;
            if (write) mem_->note_write(*pa, chunk);
            f(h, chunk);
            va += chunk;
            len -= chunk;
        }
        return true;
    }

private:
    // pt_->translate, after mapping a page not touched yet.
    std::optional<uint64_t> translate(uint64_t va, bool write) const;

    GuestMemory* mem_;
    const PageTables* pt_;
    AddressSpace* lazy_;
};

}  // namespace vessel::memory
