// A 16550A UART (the PC's COM1 at 0x3f8, IRQ 4): what Linux's 8250 driver
// needs for a console with interrupts — divisor latch, FIFO detection,
// loopback (the driver's probe), THR-empty and received-data interrupts.
//
// Transmit is instantaneous: each THR write goes to the output sink at once,
// so the transmitter is always empty. The interrupt is an edge (an ISA line
// through a KVM irqfd): it fires whenever a pending, enabled condition appears.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "base/result.h"
#include "devices/bus.h"

namespace vessel::devices::legacy {

// The UART's registers and unread input, for snapshots.
struct SerialState {
    uint8_t ier = 0, lcr = 0x03, mcr = 0x08, scr = 0, dll = 0x0c, dlm = 0;
    bool fifo_enabled = false;
    bool thr_interrupt_pending = false;
    std::vector<uint8_t> rx;  // at most Serial::kRxFifoSize bytes
};

class Serial final : public BusDevice {
public:
    using Interrupt = std::function<void()>;
    using Output = std::function<void(std::span<const uint8_t>)>;
    static constexpr uint64_t kCom1Port = 0x3f8;
    static constexpr unsigned kCom1Irq = 4;
    static constexpr uint64_t kSize = 8;
    static constexpr size_t kRxFifoSize = 64;  // what the guest may have unread

    Serial(Interrupt interrupt, Output output);

    // BusDevice (vCPU threads).
    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    // Input from the console (any thread). Returns how many bytes were taken:
    // fewer than offered when the receive FIFO is full.
    size_t enqueue_input(std::span<const uint8_t> bytes);
    // True when the guest has room for input (the console reader waits otherwise).
    bool can_accept_input() const;

    // Register state, for tests.
    uint8_t ier() const;
    uint8_t lcr() const;

    SerialState save() const;
    // Loads a saved state; refuses values a 16550A cannot hold (reserved
    // IER/MCR bits, more input than the FIFO). No interrupt is raised: the
    // interrupt controller's own state says whether one is pending.
    Result<> restore(const SerialState& state);

private:
    uint8_t read_register(uint64_t offset);
    void write_register(uint64_t offset, uint8_t value);
    uint8_t interrupt_id() const;
    void update_interrupt(bool thr_event);

    Interrupt interrupt_;
    Output output_;
    mutable std::mutex mu_;
    std::deque<uint8_t> rx_;
    uint8_t ier_ = 0, lcr_ = 0x03, mcr_ = 0x08, scr_ = 0, dll_ = 0x0c, dlm_ = 0;
    bool fifo_enabled_ = false;
    bool thr_interrupt_pending_ = false;  // cleared by an IIR read that reports it or a THR write
};

}  // namespace vessel::devices::legacy
