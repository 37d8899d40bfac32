// Where Vessel keeps per-user caches.
#pragma once

#include <string>

namespace vessel {

// $VESSEL_CACHE_DIR, else $XDG_CACHE_HOME/vessel, else $HOME/.cache/vessel;
// empty when none is set (callers then run without a cache).
std::string cache_dir();

// Creates `path` and its parents (mode 0700: caches may hold what the
// user ran); false on failure.
bool make_dirs(const std::string& path);

// Reads a whole small regular file (a link or FIFO there is not followed or
// waited on); empty on any error.
std::string read_small_file(const std::string& path, size_t max = 1 << 20);

}  // namespace vessel
