#include <gtest/gtest.h>

#include <string>

#include "devices/legacy/cmos.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/serial.h"

namespace legacy = vessel::devices::legacy;

namespace {
uint8_t in(vessel::devices::BusDevice& d, uint64_t off) {
    uint8_t v = 0;
    d.read(off, std::span<uint8_t>(&v, 1));
    return v;
}
void out(vessel::devices::BusDevice& d, uint64_t off, uint8_t v) { d.write(off, std::span<const uint8_t>(&v, 1)); }
}  // namespace

TEST(Serial, TransmitsAndRaisesThrEmptyInterrupt) {
    int irqs = 0;
    std::string tx;
    legacy::Serial s([&] { ++irqs; }, [&](std::span<const uint8_t> b) { tx.append(b.begin(), b.end()); });
    out(s, 4, 0x08);                   // MCR: OUT2 (the PC's interrupt gate)
    EXPECT_EQ(in(s, 2) & 0x0f, 0x01);  // IIR: nothing pending
    out(s, 1, 0x02);                   // IER: THR empty
    EXPECT_EQ(irqs, 1);
    EXPECT_EQ(in(s, 2) & 0x0f, 0x02);  // IIR: THR empty ...
    EXPECT_EQ(in(s, 2) & 0x0f, 0x01);  // ... acknowledged by reading it
    out(s, 0, 'h');
    out(s, 0, 'i');
    EXPECT_EQ(tx, "hi");
    EXPECT_EQ(irqs, 3);
    EXPECT_EQ(in(s, 5) & 0x60, 0x60);  // LSR: THR empty, transmitter idle
}

TEST(Serial, ReceivesWithDataReadyInterrupt) {
    int irqs = 0;
    legacy::Serial s([&] { ++irqs; }, nullptr);
    out(s, 4, 0x08);
    out(s, 1, 0x01);  // IER: RX data
    const uint8_t msg[] = {'o', 'k'};
    EXPECT_EQ(s.enqueue_input(msg), 2u);
    EXPECT_EQ(irqs, 1);
    EXPECT_EQ(in(s, 5) & 1, 1);        // LSR: data ready
    EXPECT_EQ(in(s, 2) & 0x0f, 0x04);  // IIR: RX data
    EXPECT_EQ(in(s, 0), 'o');
    EXPECT_EQ(in(s, 0), 'k');
    EXPECT_EQ(in(s, 5) & 1, 0);
    std::vector<uint8_t> flood(500, 'x');
    EXPECT_EQ(s.enqueue_input(flood), legacy::Serial::kRxFifoSize);
    EXPECT_FALSE(s.can_accept_input());
}

TEST(Serial, ProbeSeesA16550AWithLoopbackAndDivisorLatch) {
    legacy::Serial s(nullptr, nullptr);
    out(s, 3, 0x80);  // DLAB
    out(s, 0, 0x01);
    out(s, 1, 0x00);
    EXPECT_EQ(in(s, 0), 0x01);
    out(s, 3, 0x03);
    EXPECT_EQ(s.lcr(), 0x03);
    out(s, 2, 0x01);                   // FCR: enable FIFOs
    EXPECT_EQ(in(s, 2) & 0xc0, 0xc0);  // a 16550A reports FIFOs in IIR[7:6]
    out(s, 4, 0x10 | 0x0a);            // loopback, RTS, OUT2
    EXPECT_EQ(in(s, 6) & 0xf0, 0x90);  // MSR: CTS and DCD mirror RTS and OUT2
    out(s, 0, 0x5a);
    EXPECT_EQ(in(s, 0), 0x5a);  // looped back
    out(s, 7, 0xa5);
    EXPECT_EQ(in(s, 7), 0xa5);  // scratch
}

TEST(I8042, ResetCommandRequestsReset) {
    int resets = 0;
    legacy::I8042 k([&] { ++resets; });
    EXPECT_EQ(in(k, 4) & 0x02, 0);  // input buffer empty: the kernel may write
    out(k, 4, 0xaa);                // self-test
    EXPECT_EQ(in(k, 4) & 0x01, 1);
    EXPECT_EQ(in(k, 0), 0x55);
    out(k, 4, 0x60);  // write command byte
    out(k, 0, 0x47);
    out(k, 4, 0x20);
    EXPECT_EQ(in(k, 0), 0x47);
    EXPECT_EQ(resets, 0);
    out(k, 4, 0xfe);
    EXPECT_EQ(resets, 1);
}

TEST(Cmos, ReportsTimeInBcdOrBinary) {
    // 2024-02-29 13:45:56 UTC
    legacy::Cmos c(512ull << 20, 0, [] { return std::time_t(1709214356); });
    auto reg = [&](uint8_t i) {
        out(c, 0, i);
        return in(c, 1);
    };
    EXPECT_EQ(reg(0x00), 0x56);
    EXPECT_EQ(reg(0x02), 0x45);
    EXPECT_EQ(reg(0x04), 0x13);
    EXPECT_EQ(reg(0x07), 0x29);
    EXPECT_EQ(reg(0x08), 0x02);
    EXPECT_EQ(reg(0x09), 0x24);
    EXPECT_EQ(reg(0x32), 0x20);
    EXPECT_EQ(reg(0x0a) & 0x80, 0);  // no update in progress
    EXPECT_EQ(reg(0x0d), 0x80);      // valid RAM and time
    out(c, 0, 0x0b);
    out(c, 1, 0x06);  // binary, 24 h
    EXPECT_EQ(reg(0x00), 56);
    EXPECT_EQ(reg(0x04), 13);
    out(c, 0, 0x0b);
    out(c, 1, 0x04);                                         // binary, 12 h
    EXPECT_EQ(reg(0x04), 0x80 | 1);                          // 1 PM
    EXPECT_EQ(reg(0x34) | reg(0x35) << 8, (512 - 16) * 16);  // 64 KiB units above 16 MiB
}
