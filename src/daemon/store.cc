#include "daemon/store.h"

#include <fcntl.h>
#include <sqlite3.h>

#include <algorithm>

#include "base/fd.h"

namespace vessel::daemon {
namespace {

constexpr int kSchemaVersion = 1;

// The errno a failed write stands for: ENOSPC for a full database or disk
// (the daemon answers 507 then), else what the VFS saw, else EIO.
int write_errno(sqlite3* db, int rc) {
    if (rc == SQLITE_FULL) return ENOSPC;
    int e = sqlite3_system_errno(db);
    return e ? e : EIO;
}

}  // namespace

Result<std::unique_ptr<Store>> Store::open(const std::string& path) {
    std::unique_ptr<Store> s(new Store());
    s->path_ = path;
    // Created here rather than by SQLite, whose files follow the umask: the
    // records hold every VM's environment.
    Fd created(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!created) return fail_errno(path + ": cannot create the database");
    int rc = sqlite3_open_v2(path.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                             nullptr);
    if (rc != SQLITE_OK)
        return fail(path + ": cannot open database: " + (s->db_ ? sqlite3_errmsg(s->db_) : sqlite3_errstr(rc)), EIO);
    sqlite3_busy_timeout(s->db_, 5000);
    // WAL: readers never block the writer; NORMAL sync: a commit survives a
    // daemon crash (the WAL is in the page cache), only a host crash may lose
    // the last transactions — which also took the VMs with it.
    if (auto r = s->exec("PRAGMA journal_mode=WAL"); !r) return std::unexpected(r.error());
    if (auto r = s->exec("PRAGMA synchronous=NORMAL"); !r) return std::unexpected(r.error());
    if (auto r = s->exec("CREATE TABLE IF NOT EXISTS vms ("
                         " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                         " id TEXT NOT NULL UNIQUE,"
                         " name TEXT NOT NULL UNIQUE,"
                         " record TEXT NOT NULL)");
        !r)
        return std::unexpected(r.error());
    if (auto r = s->exec(("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str()); !r)
        return std::unexpected(r.error());
    const char* put_sql =
        "INSERT INTO vms (id, name, record) VALUES (?1, ?2, ?3)"
        " ON CONFLICT(id) DO UPDATE SET name = excluded.name, record = excluded.record";
    if (sqlite3_prepare_v2(s->db_, put_sql, -1, &s->put_, nullptr) != SQLITE_OK ||
        sqlite3_prepare_v2(s->db_, "DELETE FROM vms WHERE id = ?1", -1, &s->remove_, nullptr) != SQLITE_OK)
        return fail(path + ": " + sqlite3_errmsg(s->db_), EIO);
    return s;
}

Store::~Store() {
    sqlite3_finalize(put_);
    sqlite3_finalize(remove_);
    if (db_) sqlite3_close(db_);
}

Result<> Store::exec(const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = path_ + ": " + (err ? err : "sqlite error");
        sqlite3_free(err);
        return fail(msg, EIO);
    }
    return {};
}

Result<> Store::put(const std::string& id, const std::string& name, const nlohmann::json& record) {
    std::lock_guard lock(mutex_);
    flush_locked();  // an older change kept for this id (or a removal freeing a name) goes first
    auto r = put_locked(id, name, record);
    if (r) kept_.erase(id);
    return r;
}

Result<> Store::remove(const std::string& id) {
    std::lock_guard lock(mutex_);
    flush_locked();
    auto r = remove_locked(id);
    if (r) kept_.erase(id);
    return r;
}

Result<> Store::save(const std::string& id, const std::string& name, const nlohmann::json& record) {
    std::lock_guard lock(mutex_);
    return keep_on_failure(id, Kept{0, std::pair{name, record}});
}

Result<> Store::forget(const std::string& id) {
    std::lock_guard lock(mutex_);
    return keep_on_failure(id, Kept{0, std::nullopt});
}

Result<> Store::keep_on_failure(const std::string& id, Kept change) {
    flush_locked();
    auto r = write_locked(id, change);
    if (r) {
        kept_.erase(id);
    } else {
        change.seq = ++kept_seq_;
        kept_[id] = std::move(change);
    }
    return r;
}

size_t Store::flush() {
    std::lock_guard lock(mutex_);
    return flush_locked();
}

size_t Store::flush_locked() {
    if (kept_.empty()) return 0;
    std::vector<std::pair<uint64_t, std::string>> order;
    for (const auto& [id, k] : kept_) order.emplace_back(k.seq, id);
    std::sort(order.begin(), order.end());
    for (const auto& [seq, id] : order) {
        if (!write_locked(id, kept_.at(id))) break;
        kept_.erase(id);
    }
    return kept_.size();
}

size_t Store::unsaved() const {
    std::lock_guard lock(mutex_);
    return kept_.size();
}

Result<> Store::write_locked(const std::string& id, const Kept& change) {
    return change.row ? put_locked(id, change.row->first, change.row->second) : remove_locked(id);
}

Result<> Store::put_locked(const std::string& id, const std::string& name, const nlohmann::json& record) {
    std::string text = record.dump();
    sqlite3_reset(put_);
    sqlite3_bind_text(put_, 1, id.c_str(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(put_, 2, name.c_str(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
    sqlite3_bind_text(put_, 3, text.c_str(), static_cast<int>(text.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(put_);
    sqlite3_reset(put_);
    if (rc != SQLITE_DONE) return fail(path_ + ": saving VM " + id + ": " + sqlite3_errmsg(db_), write_errno(db_, rc));
    return {};
}

Result<> Store::remove_locked(const std::string& id) {
    sqlite3_reset(remove_);
    sqlite3_bind_text(remove_, 1, id.c_str(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
    int rc = sqlite3_step(remove_);
    sqlite3_reset(remove_);
    if (rc != SQLITE_DONE)
        return fail(path_ + ": removing VM " + id + ": " + sqlite3_errmsg(db_), write_errno(db_, rc));
    return {};
}

Result<std::vector<nlohmann::json>> Store::load_all() {
    std::lock_guard lock(mutex_);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT id, record FROM vms ORDER BY seq", -1, &st, nullptr) != SQLITE_OK)
        return fail(path_ + ": " + sqlite3_errmsg(db_), EIO);
    std::vector<nlohmann::json> out;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
        auto j = nlohmann::json::parse(text ? text : "", nullptr, false);
        if (j.is_discarded() || !j.is_object()) {
            auto* id = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
            std::fprintf(stderr, "vesseld: %s: record of VM %s is not valid JSON; ignored\n", path_.c_str(),
                         id ? id : "?");
            continue;
        }
        out.push_back(std::move(j));
    }
    std::string err = rc == SQLITE_DONE ? "" : sqlite3_errmsg(db_);
    sqlite3_finalize(st);
    if (!err.empty()) return fail(path_ + ": " + err, EIO);
    return out;
}

}  // namespace vessel::daemon
