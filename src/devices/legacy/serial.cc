#include "devices/legacy/serial.h"

namespace vessel::devices::legacy {
namespace {

// Register offsets.
constexpr uint64_t kData = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
// IER bits.
constexpr uint8_t kIerRxData = 0x01, kIerThrEmpty = 0x02;
// IIR values.
constexpr uint8_t kIirNone = 0x01, kIirThrEmpty = 0x02, kIirRxData = 0x04, kIirFifoEnabled = 0xc0;
// FCR bits.
constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02;
// LCR: divisor latch access.
constexpr uint8_t kLcrDlab = 0x80;
// MCR bits.
constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08, kMcrLoop = 0x10;
// LSR bits.
constexpr uint8_t kLsrDataReady = 0x01, kLsrThrEmpty = 0x20, kLsrIdle = 0x40;
// MSR bits.
constexpr uint8_t kMsrCts = 0x10, kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80;

}  // namespace

Serial::Serial(Interrupt interrupt, Output output) : interrupt_(std::move(interrupt)), output_(std::move(output)) {}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
    if (data.empty()) return;
    std::lock_guard lock(mu_);
    // Wider accesses read consecutive registers, as on an ISA bus.
    for (size_t i = 0; i < data.size(); ++i) data[i] = offset + i < kSize ? read_register(offset + i) : 0xff;
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < data.size(); ++i)
        if (offset + i < kSize) write_register(offset + i, data[i]);
}

uint8_t Serial::interrupt_id() const {
    if ((ier_ & kIerRxData) && !rx_.empty()) return kIirRxData;
    if ((ier_ & kIerThrEmpty) && thr_interrupt_pending_) return kIirThrEmpty;
    return kIirNone;
}

void Serial::update_interrupt(bool thr_event) {
    if (thr_event && (ier_ & kIerThrEmpty)) thr_interrupt_pending_ = true;
    // OUT2 gates the UART's interrupt line on PCs; Linux sets it when the port is open.
    if (interrupt_id() != kIirNone && (mcr_ & kMcrOut2) && !(mcr_ & kMcrLoop) && interrupt_) interrupt_();
}

uint8_t Serial::read_register(uint64_t offset) {
    switch (offset) {
        case kData: {
            if (lcr_ & kLcrDlab) return dll_;
            if (rx_.empty()) return 0;
            uint8_t b = rx_.front();
            rx_.pop_front();
            update_interrupt(false);
            return b;
        }
        case kIer: return (lcr_ & kLcrDlab) ? dlm_ : ier_;
        case kIirFcr: {
            uint8_t id = interrupt_id();
            // Reading the IIR acknowledges a THR-empty interrupt it reports.
            if (id == kIirThrEmpty) thr_interrupt_pending_ = false;
            return id | (fifo_enabled_ ? kIirFifoEnabled : 0);
        }
        case kLcr: return lcr_;
        case kMcr: return mcr_;
        case kLsr: return kLsrThrEmpty | kLsrIdle | (rx_.empty() ? 0 : kLsrDataReady);
        case kMsr:
            if (mcr_ & kMcrLoop) {
                // Loopback: the modem outputs come back as inputs (the 8250 probe checks this).
                return ((mcr_ & kMcrRts) ? kMsrCts : 0) | ((mcr_ & kMcrDtr) ? kMsrDsr : 0) |
                       ((mcr_ & kMcrOut1) ? kMsrRi : 0) | ((mcr_ & kMcrOut2) ? kMsrDcd : 0);
            }
            return kMsrDcd | kMsrDsr | kMsrCts;
        case kScr: return scr_;
        default: return 0xff;
    }
}

void Serial::write_register(uint64_t offset, uint8_t value) {
    switch (offset) {
        case kData:
            if (lcr_ & kLcrDlab) {
                dll_ = value;
                return;
            }
            if (mcr_ & kMcrLoop) {
                if (rx_.size() < kRxFifoSize) rx_.push_back(value);
            } else if (output_) {
                output_(std::span<const uint8_t>(&value, 1));
            }
            // The byte left at once: the THR is empty again.
            thr_interrupt_pending_ = false;
            update_interrupt(true);
            return;
        case kIer:
            if (lcr_ & kLcrDlab) {
                dlm_ = value;
                return;
            }
            ier_ = value & 0x0f;
            // Enabling the THR-empty interrupt while the THR is empty raises it.
            update_interrupt(true);
            return;
        case kIirFcr:
            fifo_enabled_ = value & kFcrEnable;
            if (value & kFcrClearRx) rx_.clear();
            return;
        case kLcr: lcr_ = value; return;
        case kMcr:
            mcr_ = value & 0x1f;
            update_interrupt(false);
            return;
        case kScr: scr_ = value; return;
        default: return;  // LSR and MSR are read-only
    }
}

size_t Serial::enqueue_input(std::span<const uint8_t> bytes) {
    std::lock_guard lock(mu_);
    if (mcr_ & kMcrLoop) return bytes.size();  // the line is disconnected in loopback
    size_t n = 0;
    while (n < bytes.size() && rx_.size() < kRxFifoSize) rx_.push_back(bytes[n++]);
    if (n) update_interrupt(false);
    return n;
}

bool Serial::can_accept_input() const {
    std::lock_guard lock(mu_);
    return rx_.size() < kRxFifoSize;
}

uint8_t Serial::ier() const {
    std::lock_guard lock(mu_);
    return ier_;
}

uint8_t Serial::lcr() const {
    std::lock_guard lock(mu_);
    return lcr_;
}

SerialState Serial::save() const {
    std::lock_guard lock(mu_);
    return {ier_,
            lcr_,
            mcr_,
            scr_,
            dll_,
            dlm_,
            fifo_enabled_,
            thr_interrupt_pending_,
            std::vector<uint8_t>(rx_.begin(), rx_.end())};
}

Result<> Serial::restore(const SerialState& s) {
    if (s.ier & ~0x0f) return fail("serial: reserved IER bits set", EINVAL);
    if (s.mcr & ~0x1f) return fail("serial: reserved MCR bits set", EINVAL);
    if (s.rx.size() > kRxFifoSize) return fail("serial: more unread input than the FIFO holds", EINVAL);
    std::lock_guard lock(mu_);
    ier_ = s.ier;
    lcr_ = s.lcr;
    mcr_ = s.mcr;
    scr_ = s.scr;
    dll_ = s.dll;
    dlm_ = s.dlm;
    fifo_enabled_ = s.fifo_enabled;
    thr_interrupt_pending_ = s.thr_interrupt_pending;
    rx_.assign(s.rx.begin(), s.rx.end());
    return {};
}

}  // namespace vessel::devices::legacy
