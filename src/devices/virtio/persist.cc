#include "devices/virtio/persist.h"

namespace vessel::devices::virtio {
namespace {

constexpr uint32_t kMaxQueues = 16;       // our devices have at most 3
constexpr size_t kMaxConfigSpace = 3840;  // 0x100..0x1000 of the MMIO window

}  // namespace

using state::Reader;
using state::Writer;

void put_transport(Writer& w, const MmioTransportState& s) {
    w.u32(s.device_id);
    w.u64(s.offered_features);
    w.u64(s.driver_features);
    w.u32(s.device_features_sel);
    w.u32(s.driver_features_sel);
    w.u32(s.queue_sel);
    w.u32(s.status);
    w.u32(s.interrupt_status);
    w.u32(s.config_generation);
    w.u8(s.active);
    w.u8(s.failed);
    w.u32(static_cast<uint32_t>(s.queues.size()));
    for (const auto& q : s.queues) {
        w.u16(q.size);
        w.u8(q.ready);
        w.u64(q.desc_gpa);
        w.u64(q.avail_gpa);
        w.u64(q.used_gpa);
        w.u8(q.indirect_allowed);
        w.u16(q.next_avail);
        w.u16(q.next_used);
    }
    w.bytes(s.config.data(), s.config.size());
}

state::RecordResult<MmioTransportState> get_transport(Reader& r) {
    MmioTransportState s;
    s.device_id = r.u32();
    s.offered_features = r.u64();
    s.driver_features = r.u64();
    s.device_features_sel = r.u32();
    s.driver_features_sel = r.u32();
    s.queue_sel = r.u32();
    s.status = r.u32();
    s.interrupt_status = r.u32();
    s.config_generation = r.u32();
    s.active = r.u8() != 0;
    s.failed = r.u8() != 0;
    uint32_t n = r.u32();
    if (!r.ok() || n > kMaxQueues) return state::malformed("virtio transport state is malformed");
    for (uint32_t i = 0; i < n; ++i) {
        QueueState q;
        q.size = r.u16();
        q.ready = r.u8() != 0;
        q.desc_gpa = r.u64();
        q.avail_gpa = r.u64();
        q.used_gpa = r.u64();
        q.indirect_allowed = r.u8() != 0;
        q.next_avail = r.u16();
        q.next_used = r.u16();
        s.queues.push_back(q);
    }
    std::string config = r.str(kMaxConfigSpace);
    if (!r.ok()) return state::malformed("virtio transport state is malformed");
    s.config.assign(config.begin(), config.end());
    return s;
}

}  // namespace vessel::devices::virtio
