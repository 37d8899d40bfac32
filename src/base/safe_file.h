// Files Vessel creates and reads for users, safe in directories other users
// may write: opened relative to a directory descriptor, never through a
// symbolic link at the last component, created owner-only (files 0600,
// directories 0700) and exclusively under a temporary name that is renamed
// into place when complete (docs/security.md, "Files Vessel writes").
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "base/fd.h"
#include "base/result.h"

namespace vessel {

// A directory opened once, so that every file is created, checked and
// renamed in the directory that was opened, whatever happens to its path
// afterwards.
class DirFd {
public:
    // Opens an existing directory. A symbolic link as the last component is
    // refused; earlier components are the caller's and are followed.
    static Result<DirFd> open(const std::string& path);
    // The same, creating the directory (mode 0700) first when it is missing;
    // `created` (if given) says whether it was made here.
    static Result<DirFd> create(const std::string& path, bool* created = nullptr);
    // A directory someone else opened (a descriptor passed over a socket),
    // read-only and not O_PATH; `path` only names it in messages.
    static Result<DirFd> adopt(Fd fd, const std::string& path);

    int get() const { return fd_.get(); }
    const std::string& path() const { return path_; }
    // "PATH/name", for messages.
    std::string shown(const std::string& name) const;
    // Whether `name` exists in the directory (a link counts, unfollowed).
    bool contains(const std::string& name) const;
    // open_regular() of `name` in this directory.
    Result<Fd> open_regular(const std::string& name) const;
    // Opens `name` for appending, creating it (0600) when missing. An
    // existing file must be a regular file, or with `devices_too` a
    // character device (/dev/null, a terminal); a symbolic link, FIFO,
    // socket or directory is refused without waiting on it.
    Result<Fd> open_append(const std::string& name, bool devices_too = false) const;
    // Removes `name` (a link is removed, not followed).
    Result<> remove(const std::string& name) const;

private:
    Fd fd_;
    std::string path_;
};

// DirFd::open_append() of `path`'s last component in its directory.
Result<Fd> open_append_path(const std::string& path, bool devices_too = false);

// `path` split at its last '/' into the directory ("." when there is none)
// and the last component; trailing slashes are dropped. Empty name for "/".
std::pair<std::string, std::string> split_path(const std::string& path);

// Opens a file for reading that must be a regular file: a symbolic link at
// the last component is not followed and a FIFO or device is refused at
// once ("PATH: not a regular file") instead of blocking in open().
Result<Fd> open_regular(const std::string& path);
Result<Fd> open_regular(int dir_fd, const std::string& name, const std::string& shown);

// The whole of a regular file opened as open_regular() does; EFBIG when it
// holds more than `max` bytes.
Result<std::string> read_regular_file(const std::string& path, size_t max);

// A file written under a unique temporary name in a directory (created with
// O_EXCL, mode 0600, never through a link) and renamed to its name by
// commit(). Until then nothing appears under the name; destroyed without a
// commit, the temporary file is removed.
class AtomicFile {
public:
    enum class Replace { kYes, kNo };

    // Creates ".NAME.tmp-RANDOM" in `dir`.
    static Result<AtomicFile> create(const DirFd& dir, const std::string& name);

    AtomicFile() = default;
    AtomicFile(AtomicFile&& other) noexcept;
    AtomicFile& operator=(AtomicFile&& other) noexcept;
    ~AtomicFile() { discard(); }

    int fd() const { return fd_.get(); }
    // The final path, for messages.
    const std::string& path() const { return shown_; }
    // Appends `size` bytes at the file offset.
    Result<> write(const void* data, size_t size);
    // fsync: the data is on disk before the name appears; commit() then also
    // syncs the directory, so the name survives a crash too.
    Result<> sync();
    // Renames the temporary file to its name. kNo fails (EEXIST, temporary
    // file removed) when the name exists; kYes replaces it, a symbolic link
    // there included, atomically: a reader sees the old file or the new one.
    Result<> commit(Replace replace);
    // Removes the temporary file now (nothing once committed).
    void discard();

private:
    Fd dir_;  // a duplicate of the directory's descriptor
    Fd fd_;
    std::string name_, tmp_, shown_;
    bool synced_ = false;
};

enum class Durable : bool { kNo, kYes };

// Writes `data` to `path` with an AtomicFile in its directory, replacing
// what was there. kYes syncs the file and the directory first.
Result<> write_file_atomic(const std::string& path, const void* data, size_t size, Durable durable = Durable::kNo);

}  // namespace vessel
