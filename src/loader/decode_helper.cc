#include "loader/decode_helper.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "base/fd.h"
#include "loader/rewriter.h"

extern char** environ;

namespace vessel::loader {

std::string decoder_path() {
    char self[PATH_MAX];
    ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return "vessel-decode";
    std::string dir(self, static_cast<size_t>(n));
    return dir.substr(0, dir.rfind('/') + 1) + "vessel-decode";
}

Result<std::vector<uint64_t>> decode_in_helper(int program_fd, std::span<const uint8_t> file, const ElfImage& image) {
    const std::string helper = decoder_path();
    if (::access(helper.c_str(), X_OK) != 0)
        return fail("cannot run the x86 decoder " + helper + ": " + std::strerror(errno) +
                        " (it is built and installed next to vessel)",
                    EIO);
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return fail_errno("pipe");
    Fd out_r(out[0]), out_w(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return fail_errno("pipe");
    Fd err_r(err[0]), err_w(err[1]);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
    posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
    posix_spawn_file_actions_adddup2(&actions, program_fd, 3);
    char* argv[] = {const_cast<char*>(helper.c_str()), nullptr};
    pid_t pid = -1;
    const int spawned = ::posix_spawn(&pid, helper.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (spawned != 0) return fail("cannot run the x86 decoder " + helper + ": " + std::strerror(spawned), EIO);
    out_w.reset();
    err_w.reset();

    auto sites = read_sites(out_r.get(), file, image);
    std::string message(4096, '\0');  // the helper's error line, if any
    ssize_t got = ::read(err_r.get(), message.data(), message.size());
    message.resize(got > 0 ? static_cast<size_t>(got) : 0);
    while (!message.empty() && message.back() == '\n') message.pop_back();
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (sites && exited_ok) return *sites;
    if (!message.empty()) return fail(message, EIO);
    if (exited_ok) return fail("the x86 decoder " + helper + " wrote no usable list of sites", EIO);
    return fail("the x86 decoder " + helper + " failed (wait status " + std::to_string(status) + ")", EIO);
}

}  // namespace vessel::loader
