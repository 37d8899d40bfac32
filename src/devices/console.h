// The host end of a full machine's serial console: stdio, a new pty, or a
// file. Output comes from vCPU threads (serial THR writes); input is read by
// the I/O thread and fed to the UART.
#pragma once

#include <span>
#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace vessel::devices {

// What the guest's serial console is connected to.
struct ConsoleSpec {
    enum class Kind { kStdio, kPty, kFile };
    Kind kind = Kind::kStdio;
    std::string path;  // kFile: the file written
};

class Console {
public:
    static Result<Console> open(const ConsoleSpec& spec);

    // Writes everything (retrying on EINTR); output a pty reader does not
    // drain is dropped rather than stalling the guest.
    void write(std::span<const uint8_t> bytes);
    // -1 when the console has no input (a file).
    int input_fd() const { return input_; }
    // The pty's slave path for kPty.
    const std::string& path() const { return path_; }

private:
    Fd owned_out_, pty_slave_;
    int output_ = -1, input_ = -1;
    bool drop_when_full_ = false;
    std::string path_;
};

}  // namespace vessel::devices
