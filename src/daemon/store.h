// The daemon's durable record of VMs: one SQLite database (WAL mode) with one
// row per VM holding its record as JSON, so the schema can grow without
// migrations. Changes that cannot be written now (a full disk) can be kept in
// memory and written later. Every method is safe to call from any thread.
#pragma once

#include <nlohmann/json.hpp>

#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"

struct sqlite3;
struct sqlite3_stmt;

namespace vessel::daemon {

class Store {
public:
    // Creates the database file with mode 0600 if it is missing (SQLite
    // gives its -wal and -shm files the mode of the database).
    static Result<std::unique_ptr<Store>> open(const std::string& path);
    ~Store();
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // Inserts or replaces the row of `id`, now or not at all (errno ENOSPC
    // when the database or disk is full). Changes kept by save() or forget()
    // are written first.
    Result<> put(const std::string& id, const std::string& name, const nlohmann::json& record);
    Result<> remove(const std::string& id);
    // put() / remove(), but a change that fails is kept in memory (replacing
    // any older one kept for `id`) until flush() writes it. Returns the error
    // of the failed attempt.
    Result<> save(const std::string& id, const std::string& name, const nlohmann::json& record);
    Result<> forget(const std::string& id);
    // Writes the kept changes, oldest first, up to the first that fails
    // again; returns how many are still kept.
    size_t flush();
    size_t unsaved() const;
    // Every record, oldest first.
    Result<std::vector<nlohmann::json>> load_all();

private:
    // A change not written yet: the row to put, or nullopt to delete it.
    struct Kept {
        uint64_t seq;
        std::optional<std::pair<std::string, nlohmann::json>> row;
    };

    Store() = default;
    Result<> exec(const char* sql);
    Result<> put_locked(const std::string& id, const std::string& name, const nlohmann::json& record);
    Result<> remove_locked(const std::string& id);
    Result<> write_locked(const std::string& id, const Kept& change);
    size_t flush_locked();
    Result<> keep_on_failure(const std::string& id, Kept change);

    mutable std::mutex mutex_;
    std::map<std::string, Kept> kept_;  // by VM id
    uint64_t kept_seq_ = 0;
    sqlite3* db_ = nullptr;
    sqlite3_stmt* put_ = nullptr;
    sqlite3_stmt* remove_ = nullptr;
    std::string path_;
};

}  // namespace vessel::daemon
