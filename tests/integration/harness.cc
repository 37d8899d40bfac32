#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

namespace vessel::test {

std::string vessel_path() { return VESSEL_BINARY_DIR "/bin/vessel"; }

std::string guest_program(const std::string& name, const std::string& libc) {
    return std::string(VESSEL_BINARY_DIR "/guest/") + name + "-" + libc;
}

const std::vector<std::string>& fixed_env() {
    static const std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                                 "HOME=/", "TZ=UTC", "LC_ALL=C"};
    return env;
}

namespace {

std::string slurp_fd(int fd) {
    std::string s;
    ::lseek(fd, 0, SEEK_SET);
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
    return s;
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, const RunOptions& o) {
    RunResult r;
    // Output goes to memfds, not pipes: no reader thread, no deadlock on big outputs.
    int out = ::memfd_create("stdout", MFD_CLOEXEC), err = ::memfd_create("stderr", MFD_CLOEXEC);
    if (out < 0 || err < 0) {
        r.err = "memfd_create failed";
        return r;
    }
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const auto& envs = o.env.empty() ? fixed_env() : o.env;
    std::vector<char*> env;
    for (const auto& e : envs) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);

    pid_t pid = ::fork();
    if (pid == 0) {
        int in = o.stdin_fd >= 0 ? o.stdin_fd : ::open(o.stdin_path.c_str(), O_RDONLY);
        if (in < 0 || ::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(200);
        if (!o.cwd.empty() && ::chdir(o.cwd.c_str()) < 0) ::_exit(201);
        ::execve(args[0], args.data(), env.data());
        ::_exit(202);
    }
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.timeout_s);
    int ws = 0;
    while (true) {
        pid_t w = ::waitpid(pid, &ws, WNOHANG);
        if (w == pid) break;
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &ws, 0);
            r.out = slurp_fd(out);
            r.err = slurp_fd(err) + "\n[harness: timed out after " + std::to_string(o.timeout_s) + " s]";
            ::close(out);
            ::close(err);
            return r;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    r.signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
    r.out = slurp_fd(out);
    r.err = slurp_fd(err);
    ::close(out);
    ::close(err);
    return r;
}

RunResult run_signalled(const std::string& sig, const std::vector<std::string>& argv, const RunOptions& options) {
    // The data is written a fixed time after the signal is sent, not after
    // the process starts: a slow start (a sanitizer build in the nested
    // machine takes ~4 s to print "ready") must not let the data win.
    static const std::string script = R"(out=$1; sig=$2; shift 2
: > "$out"
mkfifo "$out.in"
"$@" < "$out.in" > "$out" &
pid=$!
exec 3> "$out.in"
i=0
while ! grep -q ready "$out"; do sleep 0.05; i=$((i+1)); [ $i -gt 1200 ] && { echo never ready; exit 99; }; done
sleep 0.2  # "ready" comes just before the call that waits: on a loaded machine, let it get there
kill -"$sig" $pid
sleep 4
(echo data >&3) 2>/dev/null  # a subshell: SIGPIPE, if it has exited, ends only it
exec 3>&-
wait $pid
echo "status=$?"
cat "$out")";
    TempDir t;
    std::vector<std::string> sh = {"/bin/sh", "-c", script, "sh", t / "out", sig};
    sh.insert(sh.end(), argv.begin(), argv.end());
    RunOptions o = options;
    o.timeout_s = std::max(o.timeout_s, 120);
    return run(sh, o);
}

std::vector<std::string> vessel_run_argv(const std::vector<std::string>& command,
                                         const std::vector<std::string>& vessel_args) {
    std::vector<std::string> argv = {vessel_path(), "run", "--mem", "64M"};
    argv.insert(argv.end(), vessel_args.begin(), vessel_args.end());
    argv.insert(argv.end(), command.begin(), command.end());
    return argv;
}

RunResult run_vessel(const std::vector<std::string>& vessel_args, const std::vector<std::string>& command,
                     const RunOptions& options) {
    std::vector<std::string> argv = {vessel_path(), "run", "--mem", "64M"};
    for (const auto& e : fixed_env()) {
        argv.push_back("--env");
        argv.push_back(e);
    }
    argv.insert(argv.end(), vessel_args.begin(), vessel_args.end());
    argv.insert(argv.end(), command.begin(), command.end());
    RunOptions o = options;
    if (o.env.empty()) {
        o.env = fixed_env();
        // One cache for the whole test binary keeps repeated starts cheap
        // without touching the user's own cache.
        static TempDir cache;
        o.env.push_back("VESSEL_CACHE_DIR=" + cache.path());
    }
    return run(argv, o);
}

TempDir::TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/vessel-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
    path_ = tmpl;
}

TempDir::~TempDir() {
    ::nftw(
        path_.c_str(), [](const char* p, const struct stat*, int, FTW*) { return ::remove(p) < 0 ? 0 : 0; }, 64,
        FTW_DEPTH | FTW_PHYS);
}

void write_file(const std::string& path, const std::string& data, unsigned mode) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
    if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size()))
        throw std::runtime_error("write " + path);
    ::close(fd);
    ::chmod(path.c_str(), mode);
}

std::string read_file(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "<cannot open " + path + ">";
    std::string s = slurp_fd(fd);
    ::close(fd);
    return s;
}

bool exists(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0;
}

void make_dirs(const std::string& path) {
    for (size_t i = 1; i <= path.size(); ++i)
        if (i == path.size() || path[i] == '/') ::mkdir(path.substr(0, i).c_str(), 0755);
}

void copy_file(const std::string& from, const std::string& to) {
    struct stat st;
    if (::stat(from.c_str(), &st) < 0) throw std::runtime_error("stat " + from);
    write_file(to, read_file(from), st.st_mode & 07777);
}

std::string describe_tree(const std::string& dir, bool with_mtime) {
    std::vector<std::string> lines;
    std::function<void(const std::string&)> walk = [&](const std::string& rel) {
        std::string full = rel.empty() ? dir : dir + "/" + rel;
        DIR* d = ::opendir(full.c_str());
        if (!d) return;
        std::vector<std::string> names;
        while (dirent* e = ::readdir(d))
            if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, "..")) names.push_back(e->d_name);
        ::closedir(d);
        for (const auto& n : names) {
            std::string r = rel.empty() ? n : rel + "/" + n;
            std::string p = dir + "/" + r;
            struct stat st;
            if (::lstat(p.c_str(), &st) < 0) continue;
            std::ostringstream line;
            line << r << " mode=" << std::oct << (st.st_mode & 07777) << std::dec;
            if (with_mtime && !S_ISDIR(st.st_mode)) line << " mtime=" << st.st_mtim.tv_sec;
            if (S_ISDIR(st.st_mode)) {
                line << " dir";
                lines.push_back(line.str());
                walk(r);
                continue;
            }
            if (S_ISLNK(st.st_mode)) {
                char buf[4096];
                ssize_t k = ::readlink(p.c_str(), buf, sizeof buf);
                line << " link->" << std::string(buf, k > 0 ? static_cast<size_t>(k) : 0);
            } else {
                line << " file size=" << st.st_size << " data=" << std::hash<std::string>{}(read_file(p));
            }
            lines.push_back(line.str());
        }
    };
    walk("");
    std::sort(lines.begin(), lines.end());
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
}

std::string kvm_problem() {
    const char* dev = std::getenv("VESSEL_KVM_DEVICE");
    std::string path = dev && *dev ? dev : "/dev/kvm";
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return path + ": " + std::strerror(errno);
    ::close(fd);
    return {};
}

}  // namespace vessel::test
