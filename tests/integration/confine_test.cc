// The thin VMM's seccomp filter (machine/confine.h): what it refuses, what it
// still allows, and that `vessel run` really runs under it.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "../common/jailed_vmm.h"
#include "harness.h"
#include "jail/seccomp.h"
#include "machine/confine.h"

namespace vessel::test {
namespace {

// Runs `body` in a forked child under the filter; the child's exit status
// is the number of failed expectations (each is printed). `on_terminal`:
// the child's stdin is a new pseudo-terminal first.
int in_confined_child(void (*body)(int& failures), bool on_terminal = false,
                      Result<> (*confine)() = &machine::confine_thin_vmm) {
    pid_t pid = ::fork();
    if (pid == 0) {
        if (on_terminal) {
            int master = ::posix_openpt(O_RDWR | O_NOCTTY);
            if (master < 0 || ::grantpt(master) || ::unlockpt(master)) ::_exit(101);
            int slave = ::open(::ptsname(master), O_RDWR | O_NOCTTY);
            if (slave < 0 || ::dup2(slave, 0) < 0) ::_exit(102);
        }
        if (auto r = confine(); !r) {
            std::fprintf(stderr, "confine: %s\n", r.error().message.c_str());
            ::_exit(100);
        }
        int failures = 0;
        body(failures);
        ::_exit(failures);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

#define EXPECT_IN_CHILD(cond)                                                                 \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            std::fprintf(stderr, "%s:%d: %s (errno %d)\n", __FILE__, __LINE__, #cond, errno); \
            ++failures;                                                                       \
        }                                                                                     \
    } while (0)

TEST(Confine, RefusesWhatAVmmNeverNeeds) {
    EXPECT_EQ(in_confined_child([](int& failures) {
                  char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
                  errno = 0;
                  EXPECT_IN_CHILD(::execve("/bin/true", argv, nullptr) == -1 && errno == EPERM);
                  errno = 0;
                  EXPECT_IN_CHILD(::socket(AF_INET, SOCK_STREAM, 0) == -1 && errno == EPERM);
                  errno = 0;
                  EXPECT_IN_CHILD(::syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0) == -1 && errno == EPERM);
                  errno = 0;  // a fork: clone without CLONE_VM
                  EXPECT_IN_CHILD(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) == -1 && errno == EPERM);
                  errno = 0;
                  EXPECT_IN_CHILD(::syscall(SYS_clone3, nullptr, 0) == -1 && errno == ENOSYS);
                  // A new user namespace would give capabilities back. CLONE_THREAD
                  // without CLONE_SIGHAND makes the kernel refuse (EINVAL) whatever
                  // passes the filter, so nothing is ever cloned here.
                  errno = 0;
                  EXPECT_IN_CHILD(::syscall(SYS_clone, CLONE_VM | CLONE_THREAD | CLONE_NEWUSER, 0, 0, 0, 0) == -1 &&
                                  errno == EPERM);
                  errno = 0;
                  EXPECT_IN_CHILD(::unshare(CLONE_NEWUSER) == -1 && errno == EPERM);
                  int pair[2];  // socket pairs: AF_UNIX only (a guest's, thin/sys_socket.cc)
                  errno = 0;
                  EXPECT_IN_CHILD(::socketpair(AF_INET, SOCK_STREAM, 0, pair) == -1 && errno == EPERM);
                  errno = 0;
                  EXPECT_IN_CHILD(::syscall(SYS_setuid, 0) == -1 && errno == EPERM);
              }),
              0);
}

TEST(Confine, OnATerminalNoInputCanBeFaked) {
    EXPECT_EQ(in_confined_child(
                  [](int& failures) {
                      // Typing into the terminal, even with junk in the command's upper half.
                      char c = 'x';
                      errno = 0;
                      EXPECT_IN_CHILD(::syscall(SYS_ioctl, 0, TIOCSTI, &c) == -1 && errno == EPERM);
                      errno = 0;
                      EXPECT_IN_CHILD(::syscall(SYS_ioctl, 0, 0xdead00000000ul | TIOCSTI, &c) == -1 && errno == EPERM);
                      winsize ws;  // other terminal calls still work
                      EXPECT_IN_CHILD(::ioctl(0, TIOCGWINSZ, &ws) == 0);
                  },
                  true),
              0);
}

TEST(Confine, AllowsWhatAVmmDoes) {
    EXPECT_EQ(in_confined_child([](int& failures) {
                  int p[2];
                  EXPECT_IN_CHILD(::pipe2(p, O_CLOEXEC) == 0);
                  EXPECT_IN_CHILD(::write(p[1], "ok", 2) == 2);
                  char buf[2];
                  EXPECT_IN_CHILD(::read(p[0], buf, 2) == 2);
                  int fd = ::open("/proc/self/status", O_RDONLY);
                  EXPECT_IN_CHILD(fd >= 0);
                  ::close(fd);
                  void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                  EXPECT_IN_CHILD(m != MAP_FAILED);
                  winsize ws;
                  errno = 0;  // other ioctls reach the kernel (ENOTTY, not EPERM, on a pipe)
                  EXPECT_IN_CHILD(::ioctl(p[0], TIOCGWINSZ, &ws) == -1 && errno == ENOTTY);
                  int pair[2];
                  EXPECT_IN_CHILD(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
                  // Threads (clone with CLONE_VM, after clone3's ENOSYS).
                  bool ran = false;
                  std::thread([&] { ran = true; }).join();
                  EXPECT_IN_CHILD(ran);
              }),
              0);
}

// A full machine's VMM may also open AF_UNIX sockets and connect them (its
// vsock device reaches host listeners), and no other family.
TEST(Confine, FullVmmFilterAddsUnixSocketsOnly) {
    EXPECT_EQ(
        in_confined_child(
            [](int& failures) {
                int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                EXPECT_IN_CHILD(s >= 0);
                sockaddr_un addr{};
                addr.sun_family = AF_UNIX;
                std::snprintf(addr.sun_path, sizeof addr.sun_path, "/nonexistent/socket");
                errno = 0;  // reaches the kernel
                EXPECT_IN_CHILD(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == -1 && errno == ENOENT);
                errno = 0;
                EXPECT_IN_CHILD(::socket(AF_INET, SOCK_STREAM, 0) == -1 && errno == EPERM);
                errno = 0;
                EXPECT_IN_CHILD(::socket(AF_NETLINK, SOCK_RAW, 0) == -1 && errno == EPERM);
                char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
                errno = 0;
                EXPECT_IN_CHILD(::execve(argv[0], argv, nullptr) == -1 && errno == EPERM);
            },
            false, &jail::load_full_vmm_filters),
        0);
}

// A full machine's vCPU thread stacks a narrower filter on the process's:
// no file, socket or process calls there, while other threads keep theirs.
TEST(Confine, VcpuThreadFilterNarrowsThatThreadOnly) {
    EXPECT_EQ(in_confined_child(
                  [](int& failures) {
                      int p[2];
                      EXPECT_IN_CHILD(::pipe2(p, O_CLOEXEC) == 0);
                      std::thread vcpu([&] {
                          auto loaded = jail::load_vcpu_thread_filter();
                          EXPECT_IN_CHILD(loaded.has_value());
                          EXPECT_IN_CHILD(::write(p[1], "ok", 2) == 2);  // console output, eventfd signals
                          void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                          EXPECT_IN_CHILD(m != MAP_FAILED);
                          winsize ws;
                          errno = 0;  // KVM's ioctls: any ioctl reaches the kernel
                          EXPECT_IN_CHILD(::ioctl(p[0], TIOCGWINSZ, &ws) == -1 && errno == ENOTTY);
                          errno = 0;
                          EXPECT_IN_CHILD(::open("/proc/self/status", O_RDONLY) == -1 && errno == EPERM);
                          errno = 0;
                          EXPECT_IN_CHILD(::socket(AF_UNIX, SOCK_STREAM, 0) == -1 && errno == EPERM);
                          int pair[2];
                          errno = 0;
                          EXPECT_IN_CHILD(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == -1 && errno == EPERM);
                          errno = 0;  // (getppid, which "cannot fail", would not set errno)
                          EXPECT_IN_CHILD(::kill(::getpid(), 0) == -1 && errno == EPERM);
                      });
                      vcpu.join();
                      int fd = ::open("/proc/self/status", O_RDONLY);  // this thread: the process's filter only
                      EXPECT_IN_CHILD(fd >= 0);
                      ::close(fd);
                  },
                  false, &jail::load_full_vmm_filters),
              0);
}

// Its I/O thread stacks one too: the devices' back-ends on descriptors they
// hold and vsock's AF_UNIX sockets, but no path is opened or made there.
TEST(Confine, IoThreadFilterKeepsBackEndsAndRefusesPaths) {
    EXPECT_EQ(in_confined_child(
                  [](int& failures) {
                      int disk = ::open("/proc/self/status", O_RDONLY | O_CLOEXEC);  // opened at set-up
                      EXPECT_IN_CHILD(disk >= 0);
                      std::thread io([&] {
                          EXPECT_IN_CHILD(jail::load_io_thread_filter().has_value());
                          char buf[16];
                          EXPECT_IN_CHILD(::pread(disk, buf, sizeof buf, 0) == sizeof buf);
                          int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                          EXPECT_IN_CHILD(s >= 0);
                          ::close(s);
                          errno = 0;
                          EXPECT_IN_CHILD(::socket(AF_INET, SOCK_STREAM, 0) == -1 && errno == EPERM);
                          errno = 0;
                          EXPECT_IN_CHILD(::open("/proc/self/status", O_RDONLY) == -1 && errno == EPERM);
                          errno = 0;
                          EXPECT_IN_CHILD(::mkdir("/tmp/vessel-io-thread-test", 0700) == -1 && errno == EPERM);
                          errno = 0;
                          EXPECT_IN_CHILD(::unlink("/tmp/vessel-io-thread-test") == -1 && errno == EPERM);
                      });
                      io.join();
                      ::close(disk);
                  },
                  false, &jail::load_full_vmm_filters),
              0);
}

// The VMM's "Seccomp:" and "Seccomp_filters:" values while its guest
// sleeps, as "MODE/FILTERS" (2/1: the allowlist; its streams are no
// terminal, so the terminal filter is not needed).
std::string seccomp_mode_of_running_vmm(const std::vector<std::string>& extra_env) {
    std::vector<std::string> env = fixed_env();
    env.insert(env.end(), extra_env.begin(), extra_env.end());
    std::vector<std::string> args = {vessel_path(), "run", "/bin/busybox", "sleep", "3"};
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = 0;
    if (::posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), envp.data()) != 0) return "spawn failed";
    std::string mode, filters;
    // The filters go on just before the guest runs: wait for them, briefly.
    for (int i = 0; i < 100 && filters != "1"; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        const pid_t vmm = vessel::testing::jailed_vmm(pid);
        std::ifstream status("/proc/" + std::to_string(vmm) + "/status");
        for (std::string l; std::getline(status, l);) {
            auto value = [&](size_t at) { return l.substr(l.find_first_not_of(" \t", at)); };
            if (l.rfind("Seccomp:", 0) == 0) mode = value(8);
            if (l.rfind("Seccomp_filters:", 0) == 0) filters = value(16);
        }
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return mode + "/" + filters;
}

TEST(Confine, VesselRunRunsUnderTheFilterUnlessSwitchedOff) {
    REQUIRE_KVM();
    EXPECT_EQ(seccomp_mode_of_running_vmm({}), "2/1");
    EXPECT_EQ(seccomp_mode_of_running_vmm({"VESSEL_SECCOMP=off"}), "0/0");
}

}  // namespace
}  // namespace vessel::test
