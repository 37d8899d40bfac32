#include "devices/legacy/i8042.h"

namespace vessel::devices::legacy {
namespace {

constexpr uint64_t kDataOffset = 0, kStatusOffset = 4;
// Status bits.
constexpr uint8_t kStatusOutputFull = 0x01, kStatusSystemFlag = 0x04, kStatusCommand = 0x08;
// Controller commands.
constexpr uint8_t kCmdReadCommandByte = 0x20, kCmdWriteCommandByte = 0x60, kCmdDisableAux = 0xa7, kCmdEnableAux = 0xa8,
                  kCmdTestAux = 0xa9, kCmdSelfTest = 0xaa, kCmdTestKbd = 0xab, kCmdDisableKbd = 0xad,
                  kCmdEnableKbd = 0xae, kCmdReadOutputPort = 0xd0, kCmdWriteOutputPort = 0xd1,
                  kCmdWriteKbdBuffer = 0xd2, kCmdWriteAuxBuffer = 0xd3, kCmdWriteAux = 0xd4;
constexpr uint8_t kSelfTestOk = 0x55;

}  // namespace

I8042::I8042(ResetRequest on_reset) : on_reset_(std::move(on_reset)) {}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
    if (data.empty()) return;
    std::lock_guard lock(mu_);
    uint8_t v = 0xff;
    if (offset == kDataOffset) {
        v = output_.value_or(0);
        output_.reset();
    } else if (offset == kStatusOffset) {
        v = kStatusSystemFlag | (pending_command_ ? kStatusCommand : 0) | (output_ ? kStatusOutputFull : 0);
    }
    data[0] = v;
    for (size_t i = 1; i < data.size(); ++i) data[i] = 0xff;
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
    if (data.empty()) return;
    uint8_t v = data[0];
    bool reset = false;
    {
        std::lock_guard lock(mu_);
        if (offset == kStatusOffset) {
            pending_command_ = 0;
            switch (v) {
                case kCmdReadCommandByte: output_ = command_byte_; break;
                case kCmdSelfTest: output_ = kSelfTestOk; break;
                case kCmdTestKbd:
                case kCmdTestAux: output_ = 0x00; break;
                case kCmdReadOutputPort: output_ = 0x01; break;  // the reset line is not asserted
                case kCmdWriteCommandByte:
                case kCmdWriteOutputPort:
                case kCmdWriteKbdBuffer:
                case kCmdWriteAuxBuffer:
                case kCmdWriteAux: pending_command_ = v; break;
                case kCmdResetCpu: reset = true; break;
                case kCmdDisableAux:
                case kCmdEnableAux:
                case kCmdDisableKbd:
                case kCmdEnableKbd:
                default: break;
            }
        } else if (offset == kDataOffset) {
            switch (pending_command_) {
                case kCmdWriteCommandByte: command_byte_ = v; break;
                case kCmdWriteOutputPort:
                    // Bit 0 low asserts the CPU reset line.
                    if (!(v & 1)) reset = true;
                    break;
                case kCmdWriteKbdBuffer:
                case kCmdWriteAuxBuffer: output_ = v; break;
                default: break;  // no keyboard or mouse answers
            }
            pending_command_ = 0;
        }
    }
    if (reset && on_reset_) on_reset_();
}

I8042State I8042::save() {
    std::lock_guard lock(mu_);
    return {command_byte_, output_, pending_command_};
}

Result<> I8042::restore(const I8042State& s) {
    switch (s.pending_command) {
        case 0:
        case kCmdWriteCommandByte:
        case kCmdWriteOutputPort:
        case kCmdWriteKbdBuffer:
        case kCmdWriteAuxBuffer:
        case kCmdWriteAux: break;
        default: return fail("i8042: pending command is not one that takes a parameter", EINVAL);
    }
    std::lock_guard lock(mu_);
    command_byte_ = s.command_byte;
    output_ = s.output;
    pending_command_ = s.pending_command;
    return {};
}

}  // namespace vessel::devices::legacy
