// Cached program images on tmpfs, shared by every VM that runs the program.
//
// A cached image (rewriter.h, KEY.img) lives on disk, and a disk file can
// only be mapped privately if nothing is to be written back: KVM then maps
// each page read-only and takes one shadow-paging fault per page. A copy on
// tmpfs can be mapped shared and writable in the VMM, which lets KVM map its
// pages directly and prefetch their neighbours (docs/BENCHMARKS.md). The
// guest never gets write access to it: memory::AddressSpace::protect gives
// the guest a private copy of a page first.
//
// The directory is $VESSEL_SHM_DIR, else /dev/shm/vessel-EUID; it is used
// only when it is a directory (not a link) on tmpfs owned by this user with
// mode 0700. It holds at most kSharedImagesMax bytes; older copies are
// removed to make room (VMs that map one keep it until they end).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>

#include "base/fd.h"

namespace vessel::loader {

inline constexpr uint64_t kSharedImagesMax = 256ull << 20;

// $VESSEL_SHM_DIR ("off" or empty: none), else /dev/shm/vessel-EUID.
std::string shared_image_dir();

// A read-write descriptor of DIR/NAME holding the bytes of `source` (an
// image already validated from the cache; `source_stat` its fstat), copied
// there first if missing or of another size. NAME must change whenever the
// source does (shared_image_name()). Nothing when the directory is
// unusable, the copy does not fit, or anything fails: the caller maps
// `source` privately instead. `max_bytes`: the directory's limit (tests
// lower it).
// NAME for the copy of the cache file `source_stat` describes, named KEY in
// the cache: bound to that file's device, inode, size and modification time,
// so a rewritten cache file (another format, a cleared cache) or another
// cache directory never maps an older copy.
std::string shared_image_name(const std::string& key, const struct stat& source_stat);

std::optional<Fd> shared_image(const std::string& dir, const std::string& name, int source,
                               const struct stat& source_stat, uint64_t max_bytes = kSharedImagesMax);

}  // namespace vessel::loader
