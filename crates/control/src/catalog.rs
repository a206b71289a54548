//! The embedded catalog: one SQLite database (`<data dir>/catalog.db`, WAL mode) holding data
//! sources, vclusters, folders, tasks with their draft and published versions, runs, attempts
//! with their logs, and the last known status of each task.
//!
//! **Migrations.** `PRAGMA user_version` is the schema version; `MIGRATIONS` are applied in
//! order, each in its own transaction, when the daemon opens the catalog. A catalog written by
//! a newer rtsync is refused rather than guessed at.
//!
//! **What is not here.** A task's source position: the Delta table holds it, in the same
//! commit as the data. `task_status.position` is a copy for display, refreshed from the
//! engine's metrics; nothing resumes from it.
//!
//! Calls are synchronous and short; the connection sits behind a mutex. Attempt logs are
//! appended by the log writer thread through its own connection (see [`crate::logs`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::error::{Error, Result};
use crate::model::{Attempt, DataSource, DsType, Folder, LogLine, Run, Task, TaskConfig, TaskState, VCluster, Version};

pub const CATALOG_FILE: &str = "catalog.db";

/// Schema migrations; entry `i` takes the catalog from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE datasources (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    ds_type     INTEGER NOT NULL,
    properties  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE vclusters (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    vcluster_type  TEXT NOT NULL,
    slots          INTEGER NOT NULL CHECK (slots >= 1),
    created_at     TEXT NOT NULL
);
CREATE TABLE folders (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE TABLE tasks (
    id                INTEGER PRIMARY KEY,
    name              TEXT NOT NULL UNIQUE,
    task_type         INTEGER NOT NULL,
    folder_id         INTEGER NOT NULL REFERENCES folders(id),
    vcluster          TEXT NOT NULL,
    draft             TEXT NOT NULL,
    state             TEXT NOT NULL,
    deployed_version  INTEGER,
    incarnation       INTEGER NOT NULL DEFAULT 1,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE TABLE task_versions (
    task_id       INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    config        TEXT NOT NULL,
    incarnation   INTEGER NOT NULL,
    published_at  TEXT NOT NULL,
    PRIMARY KEY (task_id, version)
);
CREATE TABLE runs (
    id           INTEGER PRIMARY KEY,
    task_id      INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    version      INTEGER NOT NULL,
    incarnation  INTEGER NOT NULL,
    status       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    end_reason   TEXT,
    rows_synced  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_task ON runs (task_id, id);
CREATE TABLE attempts (
    run_id      INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    error       TEXT,
    error_kind  TEXT,
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE attempt_logs (
    id       INTEGER PRIMARY KEY,
    run_id   INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    ts       TEXT NOT NULL,
    level    TEXT NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX attempt_logs_by_attempt ON attempt_logs (run_id, attempt, id);
CREATE TABLE task_status (
    task_id         INTEGER PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    position        TEXT,
    epoch           INTEGER,
    rows_synced     INTEGER NOT NULL DEFAULT 0,
    last_commit_at  TEXT,
    updated_at      TEXT NOT NULL
);
"#];

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Opens a connection with the settings every catalog connection uses.
pub fn connect(path: &Path) -> Result<Connection> {
    let conn =
        Connection::open(path).map_err(|e| Error::internal(format!("opening the catalog {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A replaced value (a secret re-encrypted, a data source deleted) is overwritten with
    // zeros, not left in a free page of the file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<bool> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(Error::internal(format!(
            "the catalog has schema version {version}, newer than this rtsync knows ({known}): use a newer rtsync"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "catalog migrated");
    }
    Ok(version == 0)
}

/// The catalog. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

const TASK_COLUMNS: &str = "t.id, t.name, t.task_type, f.name, t.vcluster, t.state, t.draft, t.deployed_version, t.incarnation, t.last_error, t.created_at, t.updated_at";
const RUN_COLUMNS: &str = "r.id, t.name, r.version, r.incarnation, r.status, r.started_at, r.ended_at, r.end_reason, r.rows_synced, (SELECT count(*) FROM attempts a WHERE a.run_id = r.id)";
const ATTEMPT_COLUMNS: &str = "run_id, attempt, status, reason, started_at, ended_at, error, error_kind";

impl Catalog {
    /// Opens (creating and migrating) `<dir>/catalog.db`. Returns whether it was created.
    pub fn open(dir: &Path) -> Result<(Self, bool)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("creating the data directory {}: {e}", dir.display())))?;
        let path = dir.join(CATALOG_FILE);
        let mut conn = connect(&path)?;
        let created = migrate(&mut conn)?;
        Ok((Self { conn: Arc::new(Mutex::new(conn)), path }, created))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn.lock().map_err(|_| Error::internal("the catalog connection was poisoned by a panic"))
    }

    // ---- data sources ----

    pub fn insert_datasource(
        &self,
        name: &str,
        ds_type: DsType,
        properties: &BTreeMap<String, String>,
    ) -> Result<DataSource> {
        let props = serde_json::to_string(properties)?;
        {
            let conn = self.conn()?;
            conn.execute(
                "INSERT INTO datasources (name, ds_type, properties, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, ds_type.id(), props, now()],
            )?;
        }
        self.datasource(name)?.ok_or_else(|| Error::internal("data source vanished after insert"))
    }

    pub fn datasource(&self, name: &str) -> Result<Option<DataSource>> {
        let conn = self.conn()?;
        let row = conn
            .query_row(
                "SELECT id, name, ds_type, properties, created_at FROM datasources WHERE name = ?1",
                [name],
                ds_row,
            )
            .optional()?;
        row.map(|r| r.into_datasource()).transpose()
    }

    pub fn datasources(&self) -> Result<Vec<DataSource>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT id, name, ds_type, properties, created_at FROM datasources ORDER BY name")?;
        let rows = stmt.query_map([], ds_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(|r| r.into_datasource()).collect()
    }

    /// Replaces the stored properties of data sources (secrets sealed under a new key), all
    /// in one transaction: a catalog never holds secrets under two keys.
    pub fn update_datasource_properties(&self, updates: &[(i64, BTreeMap<String, String>)]) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        for (id, properties) in updates {
            let props = serde_json::to_string(properties)?;
            tx.execute("UPDATE datasources SET properties = ?2 WHERE id = ?1", params![id, props])?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves the write-ahead log into the file, empties it and rebuilds the file, so that no
    /// earlier version of a changed row stays in either.
    pub fn compact(&self) -> Result<()> {
        let conn = self.conn()?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        conn.execute_batch("VACUUM")?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    pub fn delete_datasource(&self, name: &str) -> Result<()> {
        self.conn()?.execute("DELETE FROM datasources WHERE name = ?1", [name])?;
        Ok(())
    }

    // ---- vclusters ----

    pub fn insert_vcluster(&self, name: &str, vcluster_type: &str, slots: i64) -> Result<VCluster> {
        self.conn()?.execute(
            "INSERT INTO vclusters (name, vcluster_type, slots, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, vcluster_type, slots, now()],
        )?;
        self.vcluster(name)?.ok_or_else(|| Error::internal("vcluster vanished after insert"))
    }

    pub fn vcluster(&self, name: &str) -> Result<Option<VCluster>> {
        Ok(self.vclusters()?.into_iter().find(|v| v.name == name))
    }

    /// Every vcluster with the running tasks that hold its slots.
    pub fn vclusters(&self) -> Result<Vec<VCluster>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT id, name, vcluster_type, slots, created_at FROM vclusters ORDER BY name")?;
        let mut out = stmt
            .query_map([], |r| {
                Ok(VCluster {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    vcluster_type: r.get(2)?,
                    slots: r.get(3)?,
                    slots_used: 0,
                    tasks: Vec::new(),
                    created_at: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut stmt = conn.prepare("SELECT vcluster, name FROM tasks WHERE state = 'running' ORDER BY name")?;
        let running = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for v in &mut out {
            v.tasks = running.iter().filter(|(vc, _)| *vc == v.name).map(|(_, t)| t.clone()).collect();
            v.slots_used = v.tasks.len() as i64;
        }
        Ok(out)
    }

    pub fn delete_vcluster(&self, name: &str) -> Result<()> {
        self.conn()?.execute("DELETE FROM vclusters WHERE name = ?1", [name])?;
        Ok(())
    }

    // ---- folders ----

    pub fn insert_folder(&self, name: &str) -> Result<Folder> {
        self.conn()?.execute("INSERT INTO folders (name, created_at) VALUES (?1, ?2)", params![name, now()])?;
        self.folder(name)?.ok_or_else(|| Error::internal("folder vanished after insert"))
    }

    pub fn folder(&self, name: &str) -> Result<Option<Folder>> {
        Ok(self.folders()?.into_iter().find(|f| f.name == name))
    }

    pub fn folders(&self) -> Result<Vec<Folder>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT f.id, f.name, (SELECT count(*) FROM tasks t WHERE t.folder_id = f.id), f.created_at FROM folders f ORDER BY f.name",
        )?;
        let out = stmt
            .query_map([], |r| Ok(Folder { id: r.get(0)?, name: r.get(1)?, tasks: r.get(2)?, created_at: r.get(3)? }))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(out)
    }

    pub fn delete_folder(&self, name: &str) -> Result<()> {
        self.conn()?.execute("DELETE FROM folders WHERE name = ?1", [name])?;
        Ok(())
    }

    // ---- tasks ----

    pub fn insert_task(&self, name: &str, task_type: i64, folder_id: i64, vcluster: &str) -> Result<Task> {
        let draft = serde_json::to_string(&TaskConfig::default())?;
        let ts = now();
        self.conn()?.execute(
            "INSERT INTO tasks (name, task_type, folder_id, vcluster, draft, state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'draft', ?6, ?6)",
            params![name, task_type, folder_id, vcluster, draft, ts],
        )?;
        self.task(name)?.ok_or_else(|| Error::internal("task vanished after insert"))
    }

    pub fn task(&self, name: &str) -> Result<Option<Task>> {
        let conn = self.conn()?;
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t JOIN folders f ON f.id = t.folder_id WHERE t.name = ?1");
        let row = conn.query_row(&sql, [name], task_row).optional()?;
        row.map(TaskRow::into_task).transpose()
    }

    pub fn task_by_id(&self, id: i64) -> Result<Option<Task>> {
        let conn = self.conn()?;
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t JOIN folders f ON f.id = t.folder_id WHERE t.id = ?1");
        let row = conn.query_row(&sql, [id], task_row).optional()?;
        row.map(TaskRow::into_task).transpose()
    }

    pub fn tasks(&self, folder: Option<&str>) -> Result<Vec<Task>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN folders f ON f.id = t.folder_id WHERE (?1 IS NULL OR f.name = ?1) ORDER BY t.name"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([folder], task_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(TaskRow::into_task).collect()
    }

    pub fn update_draft(&self, id: i64, draft: &TaskConfig, vcluster: &str) -> Result<()> {
        let text = serde_json::to_string(draft)?;
        self.conn()?.execute(
            "UPDATE tasks SET draft = ?2, vcluster = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, text, vcluster, now()],
        )?;
        Ok(())
    }

    pub fn set_state(&self, id: i64, state: TaskState) -> Result<()> {
        self.conn()?.execute(
            "UPDATE tasks SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, state.as_str(), now()],
        )?;
        Ok(())
    }

    pub fn set_last_error(&self, id: i64, error: Option<&str>) -> Result<()> {
        self.conn()?.execute("UPDATE tasks SET last_error = ?2 WHERE id = ?1", params![id, error])?;
        Ok(())
    }

    /// Publishes `config` as the task's next version, in `incarnation`; returns the version.
    pub fn publish(&self, id: i64, config: &TaskConfig, incarnation: i64) -> Result<i64> {
        let text = serde_json::to_string(config)?;
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let next: i64 =
            tx.query_row("SELECT coalesce(max(version), 0) + 1 FROM task_versions WHERE task_id = ?1", [id], |r| {
                r.get(0)
            })?;
        let ts = now();
        tx.execute(
            "INSERT INTO task_versions (task_id, version, config, incarnation, published_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, next, text, incarnation, ts],
        )?;
        tx.execute(
            "UPDATE tasks SET deployed_version = ?2, incarnation = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, next, incarnation, ts],
        )?;
        tx.commit()?;
        Ok(next)
    }

    pub fn version(&self, task_id: i64, version: i64) -> Result<Option<Version>> {
        let conn = self.conn()?;
        let row = conn
            .query_row(
                "SELECT version, config, incarnation, published_at FROM task_versions WHERE task_id = ?1 AND version = ?2",
                params![task_id, version],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, String>(3)?)),
            )
            .optional()?;
        row.map(|(version, config, incarnation, published_at)| {
            Ok(Version { version, config: serde_json::from_str(&config)?, incarnation, published_at })
        })
        .transpose()
    }

    /// The latest published version, deployed or not.
    pub fn latest_version(&self, task_id: i64) -> Result<Option<Version>> {
        let latest: Option<i64> =
            self.conn()?
                .query_row("SELECT max(version) FROM task_versions WHERE task_id = ?1", [task_id], |r| r.get(0))?;
        match latest {
            Some(v) => self.version(task_id, v),
            None => Ok(None),
        }
    }

    /// Forgets the deployment: draft state, no deployed version, the next incarnation (so the
    /// next deploy has a new Delta application id), no saved status.
    pub fn undeploy(&self, id: i64) -> Result<i64> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE tasks SET state = 'draft', deployed_version = NULL, incarnation = incarnation + 1, last_error = NULL, updated_at = ?2 WHERE id = ?1",
            params![id, now()],
        )?;
        tx.execute("DELETE FROM task_status WHERE task_id = ?1", [id])?;
        let inc: i64 = tx.query_row("SELECT incarnation FROM tasks WHERE id = ?1", [id], |r| r.get(0))?;
        tx.commit()?;
        Ok(inc)
    }

    pub fn delete_task(&self, id: i64) -> Result<()> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM attempt_logs WHERE run_id IN (SELECT id FROM runs WHERE task_id = ?1)", [id])?;
        tx.execute("DELETE FROM tasks WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }

    // ---- runs and attempts ----

    pub fn insert_run(&self, task_id: i64, version: i64, incarnation: i64) -> Result<i64> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO runs (task_id, version, incarnation, status, started_at) VALUES (?1, ?2, ?3, 'running', ?4)",
            params![task_id, version, incarnation, now()],
        )?;
        Ok(conn.last_insert_rowid())
    }

    pub fn end_run(&self, run_id: i64, status: &str, reason: &str) -> Result<()> {
        self.conn()?.execute(
            "UPDATE runs SET status = ?2, end_reason = ?3, ended_at = ?4 WHERE id = ?1 AND ended_at IS NULL",
            params![run_id, status, reason, now()],
        )?;
        Ok(())
    }

    pub fn add_run_rows(&self, run_id: i64, rows: i64) -> Result<()> {
        self.conn()?.execute("UPDATE runs SET rows_synced = rows_synced + ?2 WHERE id = ?1", params![run_id, rows])?;
        Ok(())
    }

    pub fn run(&self, id: i64) -> Result<Option<Run>> {
        let conn = self.conn()?;
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.id = ?1");
        Ok(conn.query_row(&sql, [id], run_row).optional()?)
    }

    pub fn runs(&self, task_id: i64) -> Result<Vec<Run>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.task_id = ?1 ORDER BY r.id DESC"
        );
        let mut stmt = conn.prepare(&sql)?;
        Ok(stmt.query_map([task_id], run_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The task's run that has not ended, if any.
    pub fn open_run(&self, task_id: i64) -> Result<Option<Run>> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.task_id = ?1 AND r.ended_at IS NULL ORDER BY r.id DESC LIMIT 1"
        );
        Ok(conn.query_row(&sql, [task_id], run_row).optional()?)
    }

    pub fn insert_attempt(&self, run_id: i64, reason: &str) -> Result<i64> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let n: i64 =
            tx.query_row("SELECT coalesce(max(attempt), 0) + 1 FROM attempts WHERE run_id = ?1", [run_id], |r| {
                r.get(0)
            })?;
        tx.execute(
            "INSERT INTO attempts (run_id, attempt, status, reason, started_at) VALUES (?1, ?2, 'running', ?3, ?4)",
            params![run_id, n, reason, now()],
        )?;
        tx.commit()?;
        Ok(n)
    }

    pub fn end_attempt(
        &self,
        run_id: i64,
        attempt: i64,
        status: &str,
        error: Option<&str>,
        kind: Option<&str>,
    ) -> Result<()> {
        self.conn()?.execute(
            "UPDATE attempts SET status = ?3, error = ?4, error_kind = ?5, ended_at = ?6 WHERE run_id = ?1 AND attempt = ?2",
            params![run_id, attempt, status, error, kind, now()],
        )?;
        Ok(())
    }

    pub fn attempts(&self, run_id: i64) -> Result<Vec<Attempt>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare(&format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ?1 ORDER BY attempt"))?;
        Ok(stmt.query_map([run_id], attempt_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// At start-up: attempts still marked running belong to a daemon that died without ending
    /// them (SIGKILL, crash, power loss).
    pub fn mark_lost_attempts(&self) -> Result<usize> {
        let n = self.conn()?.execute(
            "UPDATE attempts SET status = 'lost', ended_at = ?1, error = coalesce(error, 'the daemon stopped without ending this attempt (killed or crashed); the next attempt resumed from the table''s checkpoint') WHERE ended_at IS NULL",
            [now()],
        )?;
        Ok(n)
    }

    pub fn log_lines(&self, run_id: i64, attempt: i64) -> Result<Vec<LogLine>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT ts, level, message FROM attempt_logs WHERE run_id = ?1 AND attempt = ?2 ORDER BY id")?;
        let out = stmt
            .query_map(params![run_id, attempt], |r| {
                Ok(LogLine { ts: r.get(0)?, level: r.get(1)?, message: r.get(2)? })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(out)
    }

    // ---- last known status ----

    pub fn save_status(
        &self,
        task_id: i64,
        position: Option<&str>,
        epoch: Option<i64>,
        rows_delta: i64,
        last_commit_at: Option<&str>,
    ) -> Result<()> {
        self.conn()?.execute(
            "INSERT INTO task_status (task_id, position, epoch, rows_synced, last_commit_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (task_id) DO UPDATE SET position = coalesce(excluded.position, position), epoch = coalesce(excluded.epoch, epoch),
               rows_synced = rows_synced + excluded.rows_synced, last_commit_at = coalesce(excluded.last_commit_at, last_commit_at), updated_at = excluded.updated_at",
            params![task_id, position, epoch, rows_delta, last_commit_at, now()],
        )?;
        Ok(())
    }

    /// (position, epoch, rows synced, last commit time).
    pub fn status(&self, task_id: i64) -> Result<Option<SavedStatus>> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT position, epoch, rows_synced, last_commit_at FROM task_status WHERE task_id = ?1",
                [task_id],
                |r| {
                    Ok(SavedStatus {
                        position: r.get(0)?,
                        epoch: r.get(1)?,
                        rows_synced: r.get(2)?,
                        last_commit_at: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }
}

/// The last status the daemon saved for a task.
#[derive(Debug, Clone, Default)]
pub struct SavedStatus {
    pub position: Option<String>,
    pub epoch: Option<i64>,
    pub rows_synced: i64,
    pub last_commit_at: Option<String>,
}

struct DsRow {
    id: i64,
    name: String,
    ds_type: i64,
    properties: String,
    created_at: String,
}

fn ds_row(r: &Row<'_>) -> rusqlite::Result<DsRow> {
    Ok(DsRow { id: r.get(0)?, name: r.get(1)?, ds_type: r.get(2)?, properties: r.get(3)?, created_at: r.get(4)? })
}

impl DsRow {
    fn into_datasource(self) -> Result<DataSource> {
        let ds_type = DsType::from_id(self.ds_type).ok_or_else(|| {
            Error::internal(format!("data source {} has an unknown ds_type {}", self.name, self.ds_type))
        })?;
        Ok(DataSource {
            id: self.id,
            name: self.name,
            ds_type,
            ds_type_id: ds_type.id(),
            properties: serde_json::from_str(&self.properties)?,
            created_at: self.created_at,
        })
    }
}

struct TaskRow {
    id: i64,
    name: String,
    task_type: i64,
    folder: String,
    vcluster: String,
    state: String,
    draft: String,
    deployed_version: Option<i64>,
    incarnation: i64,
    last_error: Option<String>,
    created_at: String,
    updated_at: String,
}

fn task_row(r: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        name: r.get(1)?,
        task_type: r.get(2)?,
        folder: r.get(3)?,
        vcluster: r.get(4)?,
        state: r.get(5)?,
        draft: r.get(6)?,
        deployed_version: r.get(7)?,
        incarnation: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

impl TaskRow {
    fn into_task(self) -> Result<Task> {
        Ok(Task {
            id: self.id,
            name: self.name,
            task_type: self.task_type,
            folder: self.folder,
            vcluster: self.vcluster,
            state: TaskState::parse(&self.state)?,
            draft: serde_json::from_str(&self.draft)?,
            deployed_version: self.deployed_version,
            incarnation: self.incarnation,
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

fn run_row(r: &Row<'_>) -> rusqlite::Result<Run> {
    Ok(Run {
        id: r.get(0)?,
        task: r.get(1)?,
        version: r.get(2)?,
        incarnation: r.get(3)?,
        status: r.get(4)?,
        started_at: r.get(5)?,
        ended_at: r.get(6)?,
        end_reason: r.get(7)?,
        rows_synced: r.get(8)?,
        attempts: r.get(9)?,
    })
}

fn attempt_row(r: &Row<'_>) -> rusqlite::Result<Attempt> {
    Ok(Attempt {
        run_id: r.get(0)?,
        attempt: r.get(1)?,
        status: r.get(2)?,
        reason: r.get(3)?,
        started_at: r.get(4)?,
        ended_at: r.get(5)?,
        error: r.get(6)?,
        error_kind: r.get(7)?,
    })
}

/// Appends log lines in one transaction (the log writer's connection).
pub fn append_log_lines(conn: &mut Connection, lines: &[(i64, i64, LogLine)]) -> Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO attempt_logs (run_id, attempt, ts, level, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (run, attempt, line) in lines {
            stmt.execute(params![run, attempt, line.ts, line.level, line.message])?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_round_trips_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let (cat, created) = Catalog::open(dir.path()).unwrap();
        assert!(created);
        let (_again, created) = Catalog::open(dir.path()).unwrap();
        assert!(!created);
        let folder = cat.insert_folder("f").unwrap();
        cat.insert_vcluster("v", "SYNC", 2).unwrap();
        let t = cat.insert_task("t1", 14, folder.id, "v").unwrap();
        assert_eq!(t.state, TaskState::Draft);
        assert_eq!(t.incarnation, 1);
        let cfg = TaskConfig { source: Some("k".into()), source_table: Some("orders".into()), ..Default::default() };
        cat.update_draft(t.id, &cfg, "v").unwrap();
        let v = cat.publish(t.id, &cfg, 1).unwrap();
        assert_eq!(v, 1);
        cat.set_state(t.id, TaskState::Running).unwrap();
        assert_eq!(cat.vcluster("v").unwrap().unwrap().slots_used, 1);
        let run = cat.insert_run(t.id, v, 1).unwrap();
        assert_eq!(cat.insert_attempt(run, "deploy").unwrap(), 1);
        assert_eq!(cat.insert_attempt(run, "retry").unwrap(), 2);
        assert_eq!(cat.mark_lost_attempts().unwrap(), 2);
        assert_eq!(cat.run(run).unwrap().unwrap().attempts, 2);
        assert_eq!(cat.undeploy(t.id).unwrap(), 2);
        let t = cat.task("t1").unwrap().unwrap();
        assert_eq!((t.state, t.deployed_version, t.app_id()), (TaskState::Draft, None, "t1.2".to_string()));
        assert_eq!(cat.version(t.id, 1).unwrap().unwrap().config, cfg);
    }
}
