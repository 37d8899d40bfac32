// The snapshot state file: a versioned container of checksummed sections.
//
// Layout (all integers little-endian):
//   header   magic "VESSELSN" (8) | u32 version | u32 section count |
//            u64 size of everything after the header | u64 XXH3-64 of it
//   section  u32 type | u32 flags (0) | u64 payload size | u64 XXH3-64 of payload | payload
// A reader rejects a wrong magic, a newer version, a size that disagrees with
// the file (truncation), any checksum mismatch, and reads past a payload.
#pragma once

#include <cstdint>
#include <cstring>
#include <expected>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vessel::state {

inline constexpr char kMagic[8] = {'V', 'E', 'S', 'S', 'E', 'L', 'S', 'N'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kHeaderSize = 32;
inline constexpr uint64_t kMaxStateFile = 256ull << 20;  // state only; memory lives elsewhere

enum class Section : uint32_t {
    kConfig = 1,        // JSON: how the VM was started, and snapshot metadata
    kVcpu = 2,          // one vCPU's architectural state
    kThinProcess = 3,   // the thin layer: fds, cwd, brk, signal state
    kAddressSpace = 4,  // page allocator, page-table root, VMAs
    kMemory = 5,        // memory layout and which image pages this snapshot holds
    // Full machines (instead of kVcpu, kThinProcess and kAddressSpace):
    kVcpus = 6,    // every vCPU's record, with LAPIC, MP state and CPUID
    kMachine = 7,  // KVM's in-kernel PIC, I/O APIC, PIT and kvmclock
    kDevices = 8,  // serial, CMOS, i8042 and each virtio-mmio transport
    // Thin VMs, optional (older snapshots lack it; older vessels ignore it):
    kThinSignals = 9,  // pending signals, the mask a wait gives back, the interval timer
};

// What a component's record decoder (or the code applying a decoded record)
// found wrong. Each component's save/restore lives beside it (cpu/vcpu_state,
// memory/address_space_state, thin/process_state, devices/*/persist,
// machine/kvm_chips_state) and answers with this, so callers and tests branch
// on the fault, not on the words (Firecracker's per-device *PersistError).
enum class RecordFault {
    kTruncated,     // the record ends before its fields do
    kMalformed,     // a value the component cannot hold (count, order, range, kind)
    kWrongMachine,  // a record of the other kind of machine (thin / full)
    kRefused,       // decoded, but KVM refused to take it
};
const char* to_string(RecordFault fault);

struct RecordError {
    RecordFault fault;
    std::string message;  // for the person: names the record and what is wrong
    // Callers above the records speak Error; a record's fault is EINVAL.
    operator Error() const { return Error{message, EINVAL}; }  // NOLINT(google-explicit-constructor)
};

template <class T = void>
using RecordResult = std::expected<T, RecordError>;

inline std::unexpected<RecordError> record_error(RecordFault fault, std::string message) {
    return std::unexpected(RecordError{fault, std::move(message)});
}
inline std::unexpected<RecordError> malformed(std::string message) {
    return record_error(RecordFault::kMalformed, std::move(message));
}

// Appends fixed-width little-endian values.
class Writer {
public:
    void u8(uint8_t v) { buf_.push_back(v); }
    void u16(uint16_t v) { put(v); }
    void u32(uint32_t v) { put(v); }
    void u64(uint64_t v) { put(v); }
    void i64(int64_t v) { put(static_cast<uint64_t>(v)); }
    void bytes(const void* p, size_t n) {
        u64(n);
        raw(p, n);
    }
    void raw(const void* p, size_t n) {
        auto* b = static_cast<const uint8_t*>(p);
        buf_.insert(buf_.end(), b, b + n);
    }
    void str(std::string_view s) { bytes(s.data(), s.size()); }
    const std::vector<uint8_t>& data() const { return buf_; }
    std::vector<uint8_t> take() { return std::move(buf_); }

private:
    template <class T>
    void put(T v) {  // x86-64 is little-endian; the format is too
        uint8_t b[sizeof(T)];
        std::memcpy(b, &v, sizeof v);
        buf_.insert(buf_.end(), b, b + sizeof b);
    }
    std::vector<uint8_t> buf_;
};

// Reads what Writer wrote. Any read past the end sets a sticky error and
// returns zeros, so decoding code checks ok() once at the end.
class Reader {
public:
    explicit Reader(std::string_view data) : data_(data) {}
    uint8_t u8() { return get<uint8_t>(); }
    uint16_t u16() { return get<uint16_t>(); }
    uint32_t u32() { return get<uint32_t>(); }
    uint64_t u64() { return get<uint64_t>(); }
    int64_t i64() { return static_cast<int64_t>(get<uint64_t>()); }
    // A length-prefixed byte string of at most `max` bytes.
    std::string str(size_t max = 1 << 20) {
        uint64_t n = u64();
        if (n > max || n > data_.size() - pos_) {
            ok_ = false;
            return {};
        }
        std::string s(data_.substr(pos_, n));
        pos_ += n;
        return s;
    }
    // Exactly `n` raw bytes into `out`.
    void raw(void* out, size_t n) {
        if (n > data_.size() - pos_) {
            ok_ = false;
            std::memset(out, 0, n);
            return;
        }
        if (n == 0) return;  // `out` may be an empty vector's null data()
        std::memcpy(out, data_.data() + pos_, n);
        pos_ += n;
    }
    // A length-prefixed blob that must be exactly `n` bytes.
    void blob(void* out, size_t n) {
        if (u64() != n) ok_ = false;
        raw(out, n);
    }
    bool ok() const { return ok_; }
    bool at_end() const { return pos_ == data_.size(); }
    void fail() { ok_ = false; }

private:
    template <class T>
    T get() {
        T v{};
        if (sizeof(T) > data_.size() - pos_) {
            ok_ = false;
            return v;
        }
        std::memcpy(&v, data_.data() + pos_, sizeof v);
        pos_ += sizeof v;
        return v;
    }
    std::string_view data_;
    size_t pos_ = 0;
    bool ok_ = true;
};

using Sections = std::map<Section, std::vector<uint8_t>>;

// The whole file's bytes.
std::vector<uint8_t> encode_state_file(const Sections& sections);
// Writes the file atomically and durably, replacing `path` (a temporary file
// made with O_EXCL and mode 0600 in the directory, fsync, rename: see
// base/safe_file.h). Snapshots write theirs in machine/snapshot_dir.cc.
Result<> write_state_file(const std::string& path, const Sections& sections);
// Reads and verifies the file; a symbolic link, FIFO or device is refused
// ("PATH: not a regular file"). Errors say what is wrong and what to do.
Result<Sections> read_state_file(const std::string& path);

// 64-bit XXH3 of a buffer (used for the checksums).
uint64_t checksum(const void* data, size_t size);

}  // namespace vessel::state
