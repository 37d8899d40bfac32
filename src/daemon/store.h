// The daemon's durable record of VMs: one SQLite database (WAL mode) with one
// row per VM holding its record as JSON, so the schema can grow without
// migrations. Every method is safe to call from any thread.
#pragma once

#include <nlohmann/json.hpp>

#include <mutex>
#include <string>
#include <vector>

#include "base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace vessel::daemon {

class Store {
public:
    static Result<std::unique_ptr<Store>> open(const std::string& path);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Inserts or replaces the row of `id`.
    Result<> put(const std::string& id, const std::string& name, const nlohmann::json& record);
    Result<> remove(const std::string& id);
    // Every record, oldest first.
    Result<std::vector<nlohmann::json>> load_all();

private:
    Store() = default;
    Result<> exec(const char* sql);

    std::mutex mutex_;
    sqlite3* db_ = nullptr;
    sqlite3_stmt* put_ = nullptr;
    sqlite3_stmt* remove_ = nullptr;
    std::string path_;
};

}  // namespace vessel::daemon
