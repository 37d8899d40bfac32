#include "devices/virtio/queue.h"
#include "base/text.h"

#include <atomic>
#include <bit>
#include <cstdio>
#include <cstring>
#include <string>

namespace vessel::devices::virtio {

namespace {

struct Desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
static_assert(sizeof(Desc) == 16);

uint16_t load_u16(const memory::GuestMemory& mem, uint64_t gpa, std::memory_order order) {
    // Callers validated gpa (inside RAM, 2-byte aligned) in Queue::validate.
    auto* p = reinterpret_cast<uint16_t*>(mem.host(gpa, 2));
    return std::atomic_ref<uint16_t>(*p).load(order);
}

}  // namespace

size_t DescriptorChain::read(const memory::GuestMemory& mem, uint64_t offset, std::span<uint8_t> out) const {
    size_t done = 0;
    for (const auto& b : readable) {
        if (done == out.size()) break;
        if (offset >= b.len) {
            offset -= b.len;
            continue;
        }
        size_t n = std::min<uint64_t>(b.len - offset, out.size() - done);
        std::memcpy(out.data() + done, mem.host(b.gpa + offset, n), n);
        done += n;
        offset = 0;
    }
    return done;
}

size_t DescriptorChain::write(const memory::GuestMemory& mem, uint64_t offset, std::span<const uint8_t> in) const {
    size_t done = 0;
    for (const auto& b : writable) {
        if (done == in.size()) break;
        if (offset >= b.len) {
            offset -= b.len;
            continue;
        }
        size_t n = std::min<uint64_t>(b.len - offset, in.size() - done);
        std::memcpy(mem.host(b.gpa + offset, n), in.data() + done, n);
        done += n;
        offset = 0;
    }
    return done;
}

std::vector<iovec> DescriptorChain::iovecs(const memory::GuestMemory& mem, bool writable_part, uint64_t offset,
                                           uint64_t len) const {
    std::vector<iovec> out;
    for (const auto& b : writable_part ? writable : readable) {
        if (len == 0) break;
        if (offset >= b.len) {
            offset -= b.len;
            continue;
        }
        uint64_t n = std::min<uint64_t>(b.len - offset, len);
        if (n) out.push_back({mem.host(b.gpa + offset, n), n});
        len -= n;
        offset = 0;
    }
    return out;
}

void Queue::reset() {
    size = max_size_;
    ready = false;
    desc_gpa = avail_gpa = used_gpa = 0;
    indirect_allowed = false;
    next_avail_ = next_used_ = 0;
}

Result<> Queue::validate(const memory::GuestMemory& mem) const {
    if (size == 0 || size > max_size_ || !std::has_single_bit(size))
        return fail("queue size " + std::to_string(size) + " is not a power of 2 in 1.." + std::to_string(max_size_));
    if (desc_gpa % 16 || avail_gpa % 2 || used_gpa % 4) return fail("queue rings are misaligned");
    uint64_t desc_len = 16ull * size, avail_len = 6 + 2ull * size, used_len = 6 + 8ull * size;
    if (!mem.contains(desc_gpa, desc_len))
        return fail("descriptor table at " + hex(desc_gpa) + " is outside guest RAM");
    if (!mem.contains(avail_gpa, avail_len))
        return fail("available ring at " + hex(avail_gpa) + " is outside guest RAM");
    if (!mem.contains(used_gpa, used_len)) return fail("used ring at " + hex(used_gpa) + " is outside guest RAM");
    return {};
}

QueueState Queue::save() const {
    return {size, ready, desc_gpa, avail_gpa, used_gpa, indirect_allowed, next_avail_, next_used_};
}

Result<> Queue::restore(const QueueState& s, const memory::GuestMemory& mem) {
    Queue q(max_size_);
    q.size = s.size;
    q.ready = s.ready;
    q.desc_gpa = s.desc_gpa;
    q.avail_gpa = s.avail_gpa;
    q.used_gpa = s.used_gpa;
    q.indirect_allowed = s.indirect_allowed;
    q.next_avail_ = s.next_avail;
    q.next_used_ = s.next_used;
    if (s.size > max_size_)
        return fail("queue size " + std::to_string(s.size) + " is above the maximum " + std::to_string(max_size_));
    if (s.ready)
        if (auto r = q.validate(mem); !r) return r;
    *this = q;
    return {};
}

uint16_t Queue::avail_idx(const memory::GuestMemory& mem) const {
    // Acquire: ring entries written before the index are visible after it.
    return load_u16(mem, avail_gpa + 2, std::memory_order_acquire);
}

bool Queue::has_available(const memory::GuestMemory& mem) const {
    if (!ready) return false;
    uint16_t pending = uint16_t(avail_idx(mem) - next_avail_);
    return pending != 0 && pending <= size;
}

bool Queue::interrupt_suppressed(const memory::GuestMemory& mem) const {
    return ready && (load_u16(mem, avail_gpa, std::memory_order_acquire) & kAvailFNoInterrupt);
}

Result<> Queue::walk(const memory::GuestMemory& mem, uint64_t table_gpa, uint32_t table_entries, uint16_t first,
                     bool indirect, DescriptorChain& chain) const {
    uint32_t index = first;
    // A chain visits each descriptor at most once, so it has at most
    // `table_entries` links; one more means a loop.
    for (uint32_t count = 0;; ++count) {
        if (count >= table_entries) return fail("descriptor chain loops or is longer than its table");
        if (index >= table_entries)
            return fail("descriptor index " + std::to_string(index) + " out of range (table of " +
                        std::to_string(table_entries) + ")");
        Desc d;
        std::memcpy(&d, mem.host(table_gpa + 16ull * index, 16), 16);
        if (d.flags & kDescFIndirect) {
            if (indirect) return fail("nested indirect descriptor");
            if (!indirect_allowed) return fail("indirect descriptor without VIRTIO_F_INDIRECT_DESC");
            if (d.flags & kDescFNext) return fail("indirect descriptor with NEXT set");
            if (d.len == 0 || d.len % 16 || d.len / 16 > kMaxQueueSize)
                return fail("indirect table length " + std::to_string(d.len) + " is invalid");
            if (d.addr % 8 || !mem.contains(d.addr, d.len))
                return fail("indirect table at " + hex(d.addr) + " is misaligned or outside guest RAM");
            // An indirect descriptor ends the chain of the main table.
            return walk(mem, d.addr, d.len / 16, 0, true, chain);
        }
        if (!mem.contains(d.addr, d.len))
            return fail("descriptor buffer " + hex(d.addr) + "+" + hex(d.len) + " is outside guest RAM");
        if (d.flags & kDescFWrite) {
            chain.writable.push_back({d.addr, d.len});
            chain.writable_len += d.len;
        } else {
            if (!chain.writable.empty()) return fail("device-readable descriptor after a device-writable one");
            chain.readable.push_back({d.addr, d.len});
            chain.readable_len += d.len;
        }
        // Used-ring lengths are 32-bit; a bigger chain cannot be described.
        if (chain.readable_len + chain.writable_len > UINT32_MAX) return fail("descriptor chain longer than 4 GiB");
        if (!(d.flags & kDescFNext)) return {};
        index = d.next;
    }
}

Result<std::optional<DescriptorChain>> Queue::pop(const memory::GuestMemory& mem) {
    if (!ready) return std::nullopt;
    uint16_t idx = avail_idx(mem);
    uint16_t pending = uint16_t(idx - next_avail_);
    if (pending == 0) return std::nullopt;
    if (pending > size)
        return fail("available index " + std::to_string(idx) + " is more than the queue size ahead of " +
                    std::to_string(next_avail_));
    uint16_t head = load_u16(mem, avail_gpa + 4 + 2ull * (next_avail_ % size), std::memory_order_relaxed);
    DescriptorChain chain;
    chain.head = head;
    if (auto r = walk(mem, desc_gpa, size, head, false, chain); !r) return std::unexpected(r.error());
    ++next_avail_;
    return chain;
}

Result<> Queue::add_used(memory::GuestMemory& mem, const DescriptorChain& chain, uint32_t len) {
    if (!ready) return fail("queue is not ready");
    uint16_t head = chain.head;
    if (head >= size) return fail("used head out of range");
    uint8_t* elem = mem.host(used_gpa + 4 + 8ull * (next_used_ % size), 8);
    uint32_t id = head;
    std::memcpy(elem, &id, 4);
    std::memcpy(elem + 4, &len, 4);
    ++next_used_;
    // Release: the element (and the data written into the buffers) is visible
    // before the index that publishes it.
    auto* idx = reinterpret_cast<uint16_t*>(mem.host(used_gpa + 2, 2));
    std::atomic_ref<uint16_t>(*idx).store(next_used_, std::memory_order_release);
    for (const auto& b : chain.writable) mem.note_write(b.gpa, b.len);
    mem.note_write(used_gpa, 6 + 8ull * size);
    return {};
}

}  // namespace vessel::devices::virtio
