// A cgroup2 mount of the test's own: the test process moves into a private
// mount namespace (so the mount is gone with it, whatever happens) and mounts
// cgroup2 on a temporary directory. The hierarchy itself is the host's one
// cgroup2 hierarchy, so every group made below it is removed on destruction.
#pragma once

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

class PrivateCgroup2Mount {
public:
    PrivateCgroup2Mount() {
        if (::unshare(CLONE_NEWNS) != 0) {
            error_ = std::string("unshare(CLONE_NEWNS): ") + std::strerror(errno);
            return;
        }
        if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
            error_ = std::string("making / private: ") + std::strerror(errno);
            return;
        }
        char tmpl[] = "/tmp/vessel-cgroup2-XXXXXX";
        if (!::mkdtemp(tmpl)) {
            error_ = std::string("mkdtemp: ") + std::strerror(errno);
            return;
        }
        dir_ = tmpl;
        if (::mount("none", dir_.c_str(), "cgroup2", 0, nullptr) != 0) {
            error_ = "mount -t cgroup2 none " + dir_ + ": " + std::strerror(errno);
            ::rmdir(dir_.c_str());
            dir_.clear();
            return;
        }
        mounted_ = true;
    }
    ~PrivateCgroup2Mount() {
        for (const auto& g : groups_) remove_tree(dir_ + "/" + g);
        if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
        if (!dir_.empty()) ::rmdir(dir_.c_str());
    }
    PrivateCgroup2Mount(const PrivateCgroup2Mount&) = delete;
    PrivateCgroup2Mount& operator=(const PrivateCgroup2Mount&) = delete;

    bool ok() const { return mounted_; }
    const std::string& error() const { return error_; }
    const std::string& path() const { return dir_; }
    // A top-level group (below the mount) to remove, with everything in it, at the end.
    void remove_at_end(const std::string& group) { groups_.push_back(group); }

private:
    // Depth first; processes still inside are killed so the groups can go.
    static void remove_tree(const std::string& dir) {
        if (DIR* d = ::opendir(dir.c_str())) {
            while (dirent* e = ::readdir(d))
                if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
                    remove_tree(dir + "/" + e->d_name);
            ::closedir(d);
        }
        for (int attempt = 0; attempt < 100; ++attempt) {
            if (::rmdir(dir.c_str()) == 0 || errno == ENOENT || errno == ENOTDIR) return;
            std::ifstream procs(dir + "/cgroup.procs");
            pid_t pid;
            while (procs >> pid) ::kill(pid, SIGKILL);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }

    std::string dir_, error_;
    bool mounted_ = false;
    std::vector<std::string> groups_;
};
