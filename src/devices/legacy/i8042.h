// The PS/2 controller (ports 0x60 data, 0x64 status/command), reduced to
// what a kernel touches: the command byte, self-tests, and the CPU reset line
// (command 0xfe), which is how Linux reboots with reboot=k and how a machine
// without ACPI tells the VMM it wants to stop. No keyboard or mouse is attached.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>

#include "base/result.h"
#include "devices/bus.h"

namespace vessel::devices::legacy {

// The controller's state, for snapshots.
struct I8042State {
    uint8_t command_byte = 0x45;
    std::optional<uint8_t> output;  // byte waiting in the output buffer
    uint8_t pending_command = 0;    // 0 or a command that takes a parameter
};

class I8042 final : public BusDevice {
public:
    using ResetRequest = std::function<void()>;
    // The device sits on one bus range [0x60, 0x65): offset 0 is the data
    // port, offset 4 the status/command port.
    static constexpr uint64_t kBasePort = 0x60;
    static constexpr uint64_t kSize = 5;
    static constexpr uint8_t kCmdResetCpu = 0xfe;

    explicit I8042(ResetRequest on_reset);

    void read(uint64_t offset, std::span<uint8_t> data) override;
    void write(uint64_t offset, std::span<const uint8_t> data) override;

    I8042State save();
    // Refuses a pending command that takes no parameter.
    Result<> restore(const I8042State& state);

private:
    ResetRequest on_reset_;
    std::mutex mu_;
    uint8_t command_byte_ = 0x45;    // keyboard interrupt, system flag, translation
    std::optional<uint8_t> output_;  // byte waiting in the output buffer
    uint8_t pending_command_ = 0;    // a command whose parameter comes through port 0x60
};

}  // namespace vessel::devices::legacy
