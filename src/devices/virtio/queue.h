// Split virtqueues (virtio 1.x, section 2.7), device side, with every
// guest-written value validated before use.
//
// The guest owns the rings; nothing read from them is trusted. A chain that
// breaks a rule (address outside RAM, loop, too long, writable descriptor
// before a readable one, bad avail index, bad indirect table...) makes pop()
// return an error, and the transport then puts the device into its failed
// state. Every loop here is bounded by the queue size.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace vessel::devices::virtio {

inline constexpr uint16_t kDescFNext = 1;
inline constexpr uint16_t kDescFWrite = 2;
inline constexpr uint16_t kDescFIndirect = 4;
inline constexpr uint16_t kAvailFNoInterrupt = 1;
// The spec's largest queue; also the cap on an indirect table's entries.
inline constexpr uint16_t kMaxQueueSize = 32768;

// One guest buffer [gpa, gpa+len), already checked to lie inside guest RAM.
struct GuestBuffer {
    uint64_t gpa;
    uint32_t len;
};

// A validated descriptor chain: the device-readable buffers, then the
// device-writable ones, as the spec requires them to be ordered.
class DescriptorChain {
public:
    uint16_t head = 0;
    std::vector<GuestBuffer> readable, writable;
    uint64_t readable_len = 0, writable_len = 0;

    // Copy out of the readable part / into the writable part, starting `offset`
    // bytes in. Return the bytes copied (short at the end of the part).
    size_t read(const memory::GuestMemory& mem, uint64_t offset, std::span<uint8_t> out) const;
    size_t write(const memory::GuestMemory& mem, uint64_t offset, std::span<const uint8_t> in) const;
    // Host iovecs over [offset, offset+len) of the readable or writable part,
    // for readv/writev/preadv/pwritev straight into guest memory.
    std::vector<iovec> iovecs(const memory::GuestMemory& mem, bool writable_part, uint64_t offset, uint64_t len) const;
};

// A queue's configuration and the device's ring positions, for snapshots.
struct QueueState {
    uint16_t size = 0;
    bool ready = false;
    uint64_t desc_gpa = 0, avail_gpa = 0, used_gpa = 0;
    bool indirect_allowed = false;
    uint16_t next_avail = 0, next_used = 0;
};

class Queue {
public:
    explicit Queue(uint16_t max_size = 256) : max_size_(max_size) {}

    // Set by the transport from the guest's register writes.
    uint16_t max_size() const { return max_size_; }
    uint16_t size = 0;
    bool ready = false;
    uint64_t desc_gpa = 0, avail_gpa = 0, used_gpa = 0;
    // Negotiated VIRTIO_F_INDIRECT_DESC: without it an indirect descriptor is malformed.
    bool indirect_allowed = false;

    // Back to the state after device reset (size defaults to the maximum).
    void reset();
    // Checks size (power of 2, <= max), alignment, and that the three rings lie
    // inside guest RAM. Called when the driver sets QueueReady.
    Result<> validate(const memory::GuestMemory& mem) const;

    // The next available chain, nullopt when the ring is empty, or an error
    // when the guest wrote something malformed.
    Result<std::optional<DescriptorChain>> pop(const memory::GuestMemory& mem);
    // Gives back the chain pop() returned last (e.g. when a rate limiter says wait).
    void undo_pop() { --next_avail_; }
    // Whether pop() would find a chain (false on a malformed avail index too).
    bool has_available(const memory::GuestMemory& mem) const;
    // Returns a chain to the driver with `len` bytes written into it. Every
    // writable buffer of the chain, and the used ring, are marked dirty for
    // the VMM's dirty tracking (GuestMemory::note_write).
    Result<> add_used(memory::GuestMemory& mem, const DescriptorChain& chain, uint32_t len);
    // The driver asked not to be interrupted (VRING_AVAIL_F_NO_INTERRUPT).
    bool interrupt_suppressed(const memory::GuestMemory& mem) const;

    uint16_t next_avail() const { return next_avail_; }
    uint16_t next_used() const { return next_used_; }

    QueueState save() const;
    // Loads a saved state, checked as the driver's own setup would be: a
    // ready queue must pass validate() (size a power of 2 up to the maximum,
    // rings aligned and inside guest RAM); any queue's size fits the maximum.
    Result<> restore(const QueueState& state, const memory::GuestMemory& mem);

private:
    Result<> walk(const memory::GuestMemory& mem, uint64_t table_gpa, uint32_t table_entries, uint16_t first,
                  bool indirect, DescriptorChain& chain) const;
    uint16_t avail_idx(const memory::GuestMemory& mem) const;

    uint16_t max_size_;
    uint16_t next_avail_ = 0, next_used_ = 0;
};

}  // namespace vessel::devices::virtio
