// The legacy devices' snapshot records (docs/snapshot-format.md, section
// 7): each device's plain state struct, encoded field by field. Decoding
// bounds every length; the device's restore() checks the values.
#pragma once

#include "base/result.h"
#include "devices/legacy/cmos.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"
#include "state/format.h"

namespace vessel::devices::legacy {

void put_serial(state::Writer& w, const SerialState& s);
state::RecordResult<SerialState> get_serial(state::Reader& r);
void put_cmos(state::Writer& w, const CmosState& s);
state::RecordResult<CmosState> get_cmos(state::Reader& r);
void put_i8042(state::Writer& w, const I8042State& s);
state::RecordResult<I8042State> get_i8042(state::Reader& r);

}  // namespace vessel::devices::legacy
