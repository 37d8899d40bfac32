#include "thin/process_state.h"

namespace vessel::thin {

using state::Reader;
using state::Writer;

void put_process(Writer& w, const ProcessSnapshot& s) {
    w.str(s.cwd);
    w.u64(s.brk_start);
    w.u64(s.brk);
    w.u32(s.umask);
    w.u64(s.clear_child_tid);
    w.u64(s.signal_mask);
    w.bytes(s.sigactions.data(), sizeof s.sigactions);
    w.bytes(s.sigaltstack.data(), sizeof s.sigaltstack);
    w.u32(static_cast<uint32_t>(s.files.size()));
    for (const auto& f : s.files) {
        w.u8(f.kind);
        w.u32(static_cast<uint32_t>(f.stdio));
        w.str(f.guest_path);
        w.u32(static_cast<uint32_t>(f.flags));
        w.i64(f.offset);
        w.u8(f.directory);
    }
    w.u32(static_cast<uint32_t>(s.descriptors.size()));
    for (const auto& d : s.descriptors) {
        w.u32(static_cast<uint32_t>(d.fd));
        w.u32(d.file);
        w.u8(d.cloexec);
    }
}

state::RecordResult<ProcessSnapshot> get_process(Reader r) {
    ProcessSnapshot s;
    s.cwd = r.str(4096);
    s.brk_start = r.u64();
    s.brk = r.u64();
    s.umask = r.u32();
    s.clear_child_tid = r.u64();
    s.signal_mask = r.u64();
    r.blob(s.sigactions.data(), sizeof s.sigactions);
    r.blob(s.sigaltstack.data(), sizeof s.sigaltstack);
    uint32_t nfiles = r.u32();
    if (nfiles > thin::FdTable::kMaxFds) return state::malformed("process state: too many files");
    for (uint32_t i = 0; r.ok() && i < nfiles; ++i) {
        ProcessSnapshot::File f;
        uint8_t kind = r.u8();
        if (kind > ProcessSnapshot::File::kPath) r.fail();
        f.kind = static_cast<ProcessSnapshot::File::Kind>(kind);
        f.stdio = static_cast<int>(r.u32());
        f.guest_path = r.str(4096);
        f.flags = static_cast<int>(r.u32());
        f.offset = r.i64();
        f.directory = r.u8() != 0;
        if (f.kind == ProcessSnapshot::File::kPath && (f.guest_path.empty() || f.guest_path[0] != '/')) r.fail();
        s.files.push_back(std::move(f));
    }
    uint32_t nfds = r.u32();
    if (nfds > thin::FdTable::kMaxFds) return state::malformed("process state: too many descriptors");
    for (uint32_t i = 0; r.ok() && i < nfds; ++i) {
        ProcessSnapshot::Descriptor d;
        d.fd = static_cast<int>(r.u32());
        d.file = r.u32();
        d.cloexec = r.u8() != 0;
        if (d.fd < 0 || d.fd >= thin::FdTable::kMaxFds || d.file >= s.files.size()) r.fail();
        s.descriptors.push_back(d);
    }
    if (!r.ok() || !r.at_end() || s.cwd.empty() || s.cwd[0] != '/')
        return state::malformed("process state is malformed");
    return s;
}

void put_signals(Writer& w, const ProcessSnapshot& s) {
    w.u64(s.pending_signals);
    for (int32_t code : s.pending_codes) w.u32(static_cast<uint32_t>(code));
    w.u8(s.restore_mask.has_value());
    w.u64(s.restore_mask.value_or(0));
    for (const timeval& t : {s.real_timer.it_interval, s.real_timer.it_value}) {
        w.i64(t.tv_sec);
        w.i64(t.tv_usec);
    }
}

state::RecordResult<bool> get_signals(Reader r, ProcessSnapshot& s) {
    s.pending_signals = r.u64();
    for (int32_t& code : s.pending_codes) code = static_cast<int32_t>(r.u32());
    const uint8_t has_mask = r.u8();
    const uint64_t mask = r.u64();
    if (has_mask > 1) r.fail();
    if (has_mask) s.restore_mask = mask;
    for (timeval* t : {&s.real_timer.it_interval, &s.real_timer.it_value}) {
        t->tv_sec = r.i64();
        t->tv_usec = r.i64();
        if (t->tv_sec < 0 || t->tv_usec < 0 || t->tv_usec >= 1000000) r.fail();
    }
    if (!r.ok() || !r.at_end()) return state::malformed("signal state is malformed");
    return true;
}

}  // namespace vessel::thin
