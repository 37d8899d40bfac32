#include "devices/legacy/persist.h"

namespace vessel::devices::legacy {

using state::Reader;
using state::Writer;

void put_serial(Writer& w, const SerialState& s) {
    for (uint8_t v : {s.ier, s.lcr, s.mcr, s.scr, s.dll, s.dlm}) w.u8(v);
    w.u8(s.fifo_enabled);
    w.u8(s.thr_interrupt_pending);
    w.bytes(s.rx.data(), s.rx.size());
}

state::RecordResult<SerialState> get_serial(Reader& r) {
    SerialState s;
    for (uint8_t* v : {&s.ier, &s.lcr, &s.mcr, &s.scr, &s.dll, &s.dlm}) *v = r.u8();
    s.fifo_enabled = r.u8() != 0;
    s.thr_interrupt_pending = r.u8() != 0;
    std::string rx = r.str(Serial::kRxFifoSize);
    if (!r.ok()) return state::malformed("serial state is malformed");
    s.rx.assign(rx.begin(), rx.end());
    return s;
}

void put_cmos(Writer& w, const CmosState& s) {
    w.u8(s.index);
    w.bytes(s.regs.data(), s.regs.size());
}

state::RecordResult<CmosState> get_cmos(Reader& r) {
    CmosState s;
    s.index = r.u8();
    r.blob(s.regs.data(), s.regs.size());
    if (!r.ok()) return state::malformed("CMOS state is malformed");
    return s;
}

void put_i8042(Writer& w, const I8042State& s) {
    w.u8(s.command_byte);
    w.u8(s.output.has_value());
    w.u8(s.output.value_or(0));
    w.u8(s.pending_command);
}

state::RecordResult<I8042State> get_i8042(Reader& r) {
    I8042State s;
    s.command_byte = r.u8();
    bool has_output = r.u8() != 0;
    uint8_t output = r.u8();
    if (has_output) s.output = output;
    s.pending_command = r.u8();
    if (!r.ok()) return state::malformed("i8042 state is malformed");
    return s;
}

}  // namespace vessel::devices::legacy
