// Where Vessel keeps per-user caches.
#pragma once

#include <string>

namespace vessel {

// $VESSEL_CACHE_DIR, else $XDG_CACHE_HOME/vessel, else $HOME/.cache/vessel;
// empty when none is set (callers then run without a cache).
std::string cache_dir();

// Creates `path` and its parents (mode 0755); false on failure.
bool make_dirs(const std::string& path);

// Reads a whole small file; empty on any error.
std::string read_small_file(const std::string& path, size_t max = 1 << 20);

// Writes `data` to `path` atomically (temporary file + rename).
bool write_file_atomic(const std::string& path, const void* data, size_t size);

}  // namespace vessel
