#include "devices/console.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include "base/safe_file.h"

namespace vessel::devices {

Result<Console> Console::open(const ConsoleSpec& spec) {
    Console c;
    switch (spec.kind) {
        case ConsoleSpec::Kind::kStdio:
            c.output_ = STDOUT_FILENO;
            c.input_ = STDIN_FILENO;
            return c;
        case ConsoleSpec::Kind::kFile: {
            // The user named this file, so an existing one is appended to;
            // but a link planted at its name (in /tmp, say) is not followed,
            // a new file is the user's alone (0600), and a FIFO cannot stall
            // the start. /dev/null or a terminal may be named too.
            auto out = open_append_path(spec.path, true);
            if (!out) return wrap("--console file:" + spec.path, out.error());
            c.owned_out_ = std::move(*out);
            c.output_ = c.owned_out_.get();
            return c;
        }
        case ConsoleSpec::Kind::kPty: {
            Fd master(::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
            if (!master) return fail_errno("--console pty: posix_openpt");
            if (::grantpt(master.get()) < 0 || ::unlockpt(master.get()) < 0)
                return fail_errno("--console pty: unlockpt");
            char name[128];
            if (::ptsname_r(master.get(), name, sizeof name) != 0) return fail_errno("--console pty: ptsname");
            // Holding the slave open keeps the master readable (no EIO/HUP)
            // while no terminal program is attached.
            c.pty_slave_.reset(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
            if (!c.pty_slave_) return fail_errno(std::string("--console pty: ") + name);
            termios t;
            if (::tcgetattr(c.pty_slave_.get(), &t) == 0) {
                ::cfmakeraw(&t);
                ::tcsetattr(c.pty_slave_.get(), TCSANOW, &t);
            }
            int fl = ::fcntl(master.get(), F_GETFL);
            ::fcntl(master.get(), F_SETFL, fl | O_NONBLOCK);
            c.path_ = name;
            c.output_ = c.input_ = master.get();
            c.owned_out_ = std::move(master);
            c.drop_when_full_ = true;
            return c;
        }
    }
    return fail("unknown console kind");
}

void Console::write(std::span<const uint8_t> bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::write(output_, bytes.data(), bytes.size());
        if (n > 0) {
            bytes = bytes.subspan(static_cast<size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN && !drop_when_full_) {
            pollfd p{output_, POLLOUT, 0};
            ::poll(&p, 1, 100);
            continue;
        }
        return;  // a closed or full console loses output; the guest carries on
    }
}

}  // namespace vessel::devices
