// execve and execveat: a new program in the same process, as Linux's
// fs/exec.c and binfmt_elf/binfmt_script do it. Everything that can fail
// with an error the caller sees (the path, the arguments, the file, a `#!`
// line, the ELF headers, the dynamic loader) is checked first; then the old
// image goes (the point of no return) and the new one is loaded: a failure
// after that kills the process with SIGSEGV, as Linux's does.
//
// The program and its loader are copied into guest memory (a running VM
// cannot add file regions) and their `syscall` instructions are not
// rewritten: they reach the VMM through MSR_LSTAR, whose entry stub makes
// them cost what a rewritten call costs once the first has exited.
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "arch/x86/x86.h"
#include "loader/elf.h"
#include "loader/program.h"
#include "loader/script.h"
#include "thin/process.h"
#include "thin/sys_files.h"
#include "thin/sys_handlers.h"

namespace vessel::thin {
namespace {

// Linux's limits: one string at most MAX_ARG_STRLEN bytes with its NUL, all
// of them at most a quarter of the 8 MiB stack limit.
constexpr uint64_t kMaxArgString = 128 * 1024;
constexpr uint64_t kMaxArgTotal = 2 * 1024 * 1024;
constexpr uint64_t kMaxArgCount = 64 * 1024;

// The NULL-terminated array of strings at `ptr` (0: none), adding each
// string's size to `total`.
int64_t read_strings(Process& p, uint64_t ptr, std::vector<std::string>& out, uint64_t& total) {
    for (uint64_t i = 0; ptr; ++i) {
        if (i >= kMaxArgCount) return -E2BIG;
        uint64_t s;
        if (!p.mem().read_obj(ptr + i * 8, s)) return -EFAULT;
        if (!s) break;
        auto text = p.mem().read_cstring(s, kMaxArgString - 1);
        if (!text) return text.error().sys_errno == EFAULT ? -EFAULT : -E2BIG;
        total += text->size() + 1;
        if (total > kMaxArgTotal) return -E2BIG;
        out.push_back(std::move(*text));
    }
    return 0;
}

// An executable file of the guest's: a regular file with an execute bit.
int64_t open_executable(Process& p, const std::string& abs, bool nofollow, Fd& out) {
    auto fd = p.sandbox().open(abs, O_RDONLY | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0), 0);
    if (!fd) return -fd.error().sys_errno;
    struct stat st;
    if (::fstat(fd->get(), &st) != 0) return -errno;
    if (!S_ISREG(st.st_mode) || !(st.st_mode & 0111)) return -EACCES;
    out = std::move(*fd);
    return 0;
}

int64_t read_all(int fd, uint64_t limit, std::vector<uint8_t>& out) {
    struct stat st;
    if (::fstat(fd, &st) != 0) return -errno;
    if (static_cast<uint64_t>(st.st_size) > limit) return -ENOMEM;
    out.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < out.size()) {
        const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? -errno : -EIO;
        done += static_cast<size_t>(n);
    }
    return 0;
}

}  // namespace

int64_t Process::exec(int dirfd, uint64_t path_ptr, uint64_t argv_ptr, uint64_t envp_ptr, uint64_t flags) {
    if (flags & ~uint64_t(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)) return -EINVAL;
    if (!context_) return -ENOSYS;  // no registers to replace (tests, fuzzing)
    std::string path;
    if (int64_t r = read_path(dirfd, path_ptr, path, flags & AT_EMPTY_PATH); r < 0) return r;
    if (path.empty()) {  // AT_EMPTY_PATH: the descriptor's file (fexecve)
        OpenFile* f = file_of(*this, static_cast<uint64_t>(dirfd));
        if (!f || f->guest_path.empty()) return f ? -EACCES : -EBADF;
        path = f->guest_path;
    }
    std::vector<std::string> argv, envp;
    uint64_t total = 0;
    if (int64_t r = read_strings(*this, argv_ptr, argv, total); r < 0) return r;
    if (int64_t r = read_strings(*this, envp_ptr, envp, total); r < 0) return r;

    Fd file;
    if (int64_t r = open_executable(*this, path, flags & AT_SYMLINK_NOFOLLOW, file); r < 0) return r;
    // A `#!` script runs its interpreter with the script's path in place of
    // argv[0] (binfmt_script); the interpreter is found from the caller's
    // working directory and may not be a script itself here.
    std::string program = path;
    uint8_t head[loader::kShebangMax];
    const ssize_t n = ::pread(file.get(), head, sizeof head, 0);
    if (n < 0) return -errno;
    auto script = loader::parse_shebang(std::span<const uint8_t>(head, static_cast<size_t>(n)));
    if (!script) return -ENOEXEC;
    if (*script) {
        const loader::Shebang& s = **script;
        std::vector<std::string> args = {s.interpreter};
        if (s.argument) args.push_back(*s.argument);
        args.push_back(path);
        if (argv.size() > 1) args.insert(args.end(), argv.begin() + 1, argv.end());
        argv = std::move(args);
        program = Sandbox::normalize(cwd_, s.interpreter);
        if (int64_t r = open_executable(*this, program, false, file); r < 0) return r;
    }
    const uint64_t limit = as_->memory().size();
    std::vector<uint8_t> bytes;
    if (int64_t r = read_all(file.get(), limit, bytes); r < 0) return r;
    auto image = loader::parse_elf(bytes);
    if (!image) return -ENOEXEC;
    std::vector<uint8_t> interp_bytes;
    std::optional<loader::InterpreterImage> interp;
    if (!image->interp.empty()) {
        Fd ld;
        if (int64_t r = open_executable(*this, Sandbox::normalize(cwd_, image->interp), false, ld); r < 0)
            return r == -EACCES ? -EACCES : -ENOENT;
        if (int64_t r = read_all(ld.get(), limit, interp_bytes); r < 0) return r;
        auto ld_image = loader::parse_elf(interp_bytes);
        if (!ld_image || !ld_image->interp.empty()) return -ELIBBAD;
        interp = loader::InterpreterImage{interp_bytes, std::move(*ld_image), {}, {}, 0};
    }

    loader::ProgramSpec spec;
    spec.argv = argv;
    spec.envp = envp;
    spec.execfn = path;
    spec.stack_size = options_.stack_size;
    // Pages on first touch: a process tree's stacks would otherwise take
    // 8 MiB of guest memory each (a fork then exec is the common case).
    spec.lazy_stack = true;
    spec.hwcap = options_.hwcap;
    spec.hwcap2 = options_.hwcap2;
    spec.uid = spec.euid = options_.uid;
    spec.gid = spec.egid = options_.gid;
    if (::getrandom(spec.random, sizeof spec.random, 0) != sizeof spec.random) return -EAGAIN;
    spec.interpreter = interp ? &*interp : nullptr;

    // The point of no return: the old image goes.
    settle_read_ahead();
    std::vector<std::pair<uint64_t, uint64_t>> old;
    for (const auto& [start, v] : as_->vmas()) old.emplace_back(start, v.end - start);
    for (const auto& [start, len] : old) (void)as_->unmap(start, len);
    if (options_.tree) options_.tree->execed(*this);  // a vfork parent goes on
    auto loaded = loader::load_program(*as_, bytes, *image, {}, {}, spec);
    if (!loaded) {
        if (loaded.error().sys_errno == ENOMEM) note_out_of_memory();
        die_of(SIGSEGV);
        return 0;
    }

    // What survives an exec and what does not (execve(2)): caught signals
    // go back to their default, ignored ones stay ignored; the mask, the
    // pending signals, the timer, the working directory and umask stay;
    // close-on-exec descriptors close; the alternate stack goes.
    for (auto& act : sigactions_)
        if (act.handler != 1 /* SIG_IGN */) act = {};
    sigaltstack_ = {0, SS_DISABLE, 0, 0};
    restore_mask_.reset();
    std::vector<int> cloexec;
    for (const auto& [fd, entry] : fds_.entries())
        if (entry.cloexec) cloexec.push_back(fd);
    for (int fd : cloexec) fds_.close(fd);
    set_clear_child_tid(0);
    prctl_state_.pdeathsig = 0;
    options_.argv = argv;
    options_.envp = envp;
    options_.comm = path.substr(path.rfind('/') + 1).substr(0, 15);
    self_exe_strings_ = {};
    set_brk_start(loaded->brk_start);

    UserContext& ctx = *context_;
    ctx.regs = {};
    ctx.regs.rip = loaded->entry;
    ctx.regs.rsp = loaded->stack_pointer;
    ctx.regs.rflags = arch::x86::rflags::kReserved1;
    ctx.trap = {};
    ctx.replaced = true;
    (void)cpu_->set_fs_base(0);
    (void)cpu_->set_gs_base(0);
    reset_fpu();
    return 0;
}

int64_t sys_execve(Process& p, ExecveArgs a) { return p.exec(AT_FDCWD, a.path(), a.argv(), a.envp(), 0); }

int64_t sys_execveat(Process& p, ExecveatArgs a) { return p.exec(a.dirfd(), a.path(), a.argv(), a.envp(), a.flags()); }

}  // namespace vessel::thin
