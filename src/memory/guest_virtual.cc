#include "memory/guest_virtual.h"

#include "memory/address_space.h"

namespace vessel::memory {

std::optional<uint64_t> GuestVirtual::translate(uint64_t va, bool write) const {
    auto pa = pt_->translate(va, write);
    if (!pa && lazy_ && lazy_->fault_in(va, write ? kProtWrite : kProtRead)) pa = pt_->translate(va, write);
    return pa;
}

bool GuestVirtual::read(uint64_t va, void* out, uint64_t len) const {
    auto* dst = static_cast<uint8_t*>(out);
    return for_each_chunk(va, len, false, [&](uint8_t* h, uint64_t n) {
        std::memcpy(dst, h, n);
        dst += n;
    });
}

bool GuestVirtual::write(uint64_t va, const void* in, uint64_t len) const {
    auto* src = static_cast<const uint8_t*>(in);
    return for_each_chunk(va, len, true, [&](uint8_t* h, uint64_t n) {
        std::memcpy(h, src, n);
        src += n;
    });
}

bool GuestVirtual::fill(uint64_t va, uint8_t byte, uint64_t len) const {
    return for_each_chunk(va, len, true, [&](uint8_t* h, uint64_t n) { std::memset(h, byte, n); });
}

Result<std::string> GuestVirtual::read_cstring(uint64_t va, uint64_t max) const {
    std::string s;
    while (true) {
        auto pa = translate(va, false);
        if (!pa) return fail("bad address", EFAULT);
        uint64_t chunk = kPageSize - (va & kPageMask);
        const char* h = reinterpret_cast<const char*>(mem_->host(*pa, chunk));
        if (!h) return fail("bad address", EFAULT);
        const void* nul = std::memchr(h, 0, chunk);
        uint64_t n = nul ? static_cast<const char*>(nul) - h : chunk;
        if (s.size() + n > max) return fail("name too long", ENAMETOOLONG);
        s.append(h, n);
        if (nul) return s;
        va += chunk;
    }
}

}  // namespace vessel::memory
