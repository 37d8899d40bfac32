#include "memory/page_allocator.h"

namespace vessel::memory {

std::optional<uint64_t> PageAllocator::allocate() {
    std::lock_guard g(mu_);
    if (!free_.empty()) {
        uint64_t p = free_.back();
        free_.pop_back();
        return p;
    }
    if (next_ + 4096 > end_) return std::nullopt;
    uint64_t p = next_;
    next_ += 4096;
    return p;
}

}  // namespace vessel::memory
