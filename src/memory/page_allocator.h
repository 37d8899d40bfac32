// Hands out guest-physical pages from a fixed range.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

namespace vessel::memory {

// Bump allocation with a free list. Freed pages are reused before fresh ones
// so a long-running guest's footprint stays compact. Thread-safe: the
// address spaces of a thin VM's processes share one pool, and each process
// runs on its own vCPU thread.
class PageAllocator {
public:
    PageAllocator() = default;
    PageAllocator(uint64_t begin, uint64_t end) : next_(begin), end_(end) {}

    std::optional<uint64_t> allocate();
    // `pages` contiguous fresh pages, when the free list is empty and the
    // range has room (nullopt otherwise: allocate one by one).
    std::optional<uint64_t> allocate_run(uint64_t pages) {
        std::lock_guard g(mu_);
        if (!free_.empty() || pages > (end_ - next_) / 4096) return std::nullopt;
        uint64_t p = next_;
        next_ += pages * 4096;
        return p;
    }
    void free(uint64_t gpa) {
        std::lock_guard g(mu_);
        free_.push_back(gpa);
    }
    uint64_t pages_free() const {
        std::lock_guard g(mu_);
        return (end_ - next_) / 4096 + free_.size();
    }
    uint64_t high_water() const {
        std::lock_guard g(mu_);
        return next_;
    }

    // State capture for snapshots (taken while the VM is paused).
    uint64_t next() const { return next_; }
    uint64_t end() const { return end_; }
    const std::vector<uint64_t>& free_list() const { return free_; }
    void restore(uint64_t next, uint64_t end, std::vector<uint64_t> free_list) {
        std::lock_guard g(mu_);
        next_ = next;
        end_ = end;
        free_ = std::move(free_list);
    }

private:
    mutable std::mutex mu_;
    uint64_t next_ = 0;
    uint64_t end_ = 0;
    std::vector<uint64_t> free_;
};

}  // namespace vessel::memory
