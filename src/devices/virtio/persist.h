// A virtio-mmio transport's snapshot record (docs/snapshot-format.md,
// section 8): its registers, each queue's addresses and indices, and the
// device's configuration space. Decoding bounds the counts and lengths;
// MmioTransport::restore() checks the values against guest memory.
#pragma once

#include "base/result.h"
#include "devices/virtio/mmio_transport.h"
#include "state/format.h"

namespace vessel::devices::virtio {

void put_transport(state::Writer& w, const MmioTransportState& s);
state::RecordResult<MmioTransportState> get_transport(state::Reader& r);

}  // namespace vessel::devices::virtio
