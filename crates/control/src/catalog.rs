//! The catalog: data sources, vclusters, folders, tasks with their draft and published
//! versions, runs, attempts with their logs, and the last known status of each task. It lives
//! in one SQLite file in the data directory (`<data dir>/catalog.db`, WAL mode: the
//! single-node default, one daemon per file as the data directory's lock ensures) or in a
//! PostgreSQL database that several workers share (`rtsync serve --catalog postgres://…`).
//! Every query is written once, over [`crate::db`].
//!
//! **Migrations.** Each dialect has its list of migrations, numbered alike: entry `i` takes
//! the schema from version `i` to `i + 1`, in one transaction, when a daemon opens the catalog.
//! SQLite keeps the version in `PRAGMA user_version`; PostgreSQL in the table
//! `rtsync_schema`, under an advisory lock so that workers starting together migrate once. A
//! catalog written by a newer rtsync is refused rather than guessed at.
//!
//! **What is not here.** A task's source position: the Delta table holds it, in the same
//! commit as the data. `task_status.position` is a copy for display, refreshed from the
//! engine's metrics; nothing resumes from it.

use std::collections::BTreeMap;
use std::path::Path;

use crate::db::{Db, Dialect, Row};
use crate::error::{Error, Result};
use crate::model::{Attempt, DataSource, DsType, Folder, LogLine, Run, Task, TaskConfig, TaskState, VCluster, Version};
use crate::params;

pub const CATALOG_FILE: &str = "catalog.db";

/// SQLite's migrations; entry `i` takes the catalog from version `i` to `i + 1`.
const SQLITE_MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    // 2: the worker of each attempt (one worker, the daemon, with SQLite)
    "ALTER TABLE attempts ADD COLUMN worker_id TEXT;",
    // 3: alert rules and their alerts (see `crate::alerts`)
    r#"
CREATE TABLE alert_rules (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    scope_kind  TEXT NOT NULL,
    scope       TEXT NOT NULL,
    condition   TEXT NOT NULL,
    for_secs    INTEGER NOT NULL DEFAULT 0,
    webhook     TEXT,
    secret      TEXT,
    created_at  TEXT NOT NULL
);
CREATE TABLE alert_events (
    id              INTEGER PRIMARY KEY,
    rule_id         INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    task            TEXT NOT NULL,
    value           TEXT NOT NULL,
    fired_at        TEXT NOT NULL,
    resolved_at     TEXT,
    fired_sent      INTEGER NOT NULL DEFAULT 0,
    resolved_sent   INTEGER NOT NULL DEFAULT 0,
    delivery_error  TEXT
);
CREATE UNIQUE INDEX alert_events_open ON alert_events (rule_id, task) WHERE resolved_at IS NULL;
"#,
    // 4: when each alert condition began to hold, so a grace period survives restarts
    r#"
CREATE TABLE alert_pending (
    rule_id  INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    task     TEXT NOT NULL,
    since    TEXT NOT NULL,
    PRIMARY KEY (rule_id, task)
);
"#,
];

/// PostgreSQL's migrations, numbered as SQLite's. Names sort byte-wise (`COLLATE "C"`) as in
/// SQLite.
const POSTGRES_MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE datasources (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    ds_type     BIGINT NOT NULL,
    properties  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE vclusters (
    id             BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name           TEXT COLLATE "C" NOT NULL UNIQUE,
    vcluster_type  TEXT NOT NULL,
    slots          BIGINT NOT NULL CHECK (slots >= 1),
    created_at     TEXT NOT NULL
);
CREATE TABLE folders (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);
CREATE TABLE tasks (
    id                BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name              TEXT COLLATE "C" NOT NULL UNIQUE,
    task_type         BIGINT NOT NULL,
    folder_id         BIGINT NOT NULL REFERENCES folders(id),
    vcluster          TEXT NOT NULL,
    draft             TEXT NOT NULL,
    state             TEXT NOT NULL,
    deployed_version  BIGINT,
    incarnation       BIGINT NOT NULL DEFAULT 1,
    last_error        TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);
CREATE TABLE task_versions (
    task_id       BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    version       BIGINT NOT NULL,
    config        TEXT NOT NULL,
    incarnation   BIGINT NOT NULL,
    published_at  TEXT NOT NULL,
    PRIMARY KEY (task_id, version)
);
CREATE TABLE runs (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    task_id      BIGINT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    version      BIGINT NOT NULL,
    incarnation  BIGINT NOT NULL,
    status       TEXT NOT NULL,
    started_at   TEXT NOT NULL,
    ended_at     TEXT,
    end_reason   TEXT,
    rows_synced  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_by_task ON runs (task_id, id);
CREATE TABLE attempts (
    run_id      BIGINT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    error       TEXT,
    error_kind  TEXT,
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE attempt_logs (
    id       BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    run_id   BIGINT NOT NULL,
    attempt  BIGINT NOT NULL,
    ts       TEXT NOT NULL,
    level    TEXT NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX attempt_logs_by_attempt ON attempt_logs (run_id, attempt, id);
CREATE TABLE task_status (
    task_id         BIGINT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    position        TEXT,
    epoch           BIGINT,
    rows_synced     BIGINT NOT NULL DEFAULT 0,
    last_commit_at  TEXT,
    updated_at      TEXT NOT NULL
);
"#,
    // 2: workers, task leases, and the worker of each attempt (see `crate::cluster`)
    r#"
CREATE TABLE workers (
    id            TEXT COLLATE "C" PRIMARY KEY,
    address       TEXT NOT NULL,
    vcluster      TEXT NOT NULL,
    version       TEXT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    stopping      BOOLEAN NOT NULL DEFAULT false
);
CREATE TABLE task_leases (
    task_id      BIGINT PRIMARY KEY REFERENCES tasks(id) ON DELETE CASCADE,
    worker_id    TEXT,
    epoch        BIGINT NOT NULL DEFAULT 0,
    expires_at   TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    acquired_at  TIMESTAMPTZ
);
CREATE INDEX task_leases_by_worker ON task_leases (worker_id);
ALTER TABLE attempts ADD COLUMN worker_id TEXT;
"#,
    // 3: alert rules and their alerts (see `crate::alerts`)
    r#"
CREATE TABLE alert_rules (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    scope_kind  TEXT NOT NULL,
    scope       TEXT NOT NULL,
    condition   TEXT NOT NULL,
    for_secs    BIGINT NOT NULL DEFAULT 0,
    webhook     TEXT,
    secret      TEXT,
    created_at  TEXT NOT NULL
);
CREATE TABLE alert_events (
    id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    rule_id         BIGINT NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    task            TEXT NOT NULL,
    value           TEXT NOT NULL,
    fired_at        TEXT NOT NULL,
    resolved_at     TEXT,
    fired_sent      BIGINT NOT NULL DEFAULT 0,
    resolved_sent   BIGINT NOT NULL DEFAULT 0,
    delivery_error  TEXT
);
CREATE UNIQUE INDEX alert_events_open ON alert_events (rule_id, task) WHERE resolved_at IS NULL;
"#,
    // 4: when each alert condition began to hold, so a grace period survives restarts
    r#"
CREATE TABLE alert_pending (
    rule_id  BIGINT NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    task     TEXT COLLATE "C" NOT NULL,
    since    TEXT NOT NULL,
    PRIMARY KEY (rule_id, task)
);
"#,
];

/// Serializes migrations of workers that start together (`pg_advisory_xact_lock` key).
const MIGRATION_LOCK: i64 = 0x7274_7379_6e63;

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Applies the migrations the catalog lacks. Returns whether it was empty before.
async fn migrate(db: &Db) -> Result<bool> {
    let (migrations, read_version) = match db.dialect() {
        Dialect::Sqlite => (SQLITE_MIGRATIONS, "PRAGMA user_version"),
        Dialect::Postgres => (POSTGRES_MIGRATIONS, "SELECT coalesce(max(version), 0) FROM rtsync_schema"),
    };
    let mut tx = db.begin().await?;
    if db.dialect() == Dialect::Postgres {
        tx.execute("SELECT pg_advisory_xact_lock($1)", params![MIGRATION_LOCK]).await?;
        tx.batch("CREATE TABLE IF NOT EXISTS rtsync_schema (version BIGINT NOT NULL, applied_at TEXT NOT NULL)")
            .await?;
    }
    let version = tx.query_one(read_version, &[]).await?.i64(0)?;
    let known = migrations.len() as i64;
    if version > known {
        return Err(Error::internal(format!(
            "the catalog has schema version {version}, newer than this rtsync knows ({known}): use a newer rtsync"
        )));
    }
    for (i, sql) in migrations.iter().enumerate().skip(version as usize) {
        tx.batch(sql).await?;
        let next = i as i64 + 1;
        match db.dialect() {
            Dialect::Sqlite => tx.batch(&format!("PRAGMA user_version = {next}")).await?,
            Dialect::Postgres => {
                tx.execute("INSERT INTO rtsync_schema (version, applied_at) VALUES ($1, $2)", params![next, now()])
                    .await?;
            }
        }
        tracing::info!(version = next, catalog = %db.location(), "catalog migrated");
    }
    tx.commit().await?;
    Ok(version == 0)
}

/// The catalog. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    db: Db,
}

const TASK_COLUMNS: &str = "t.id, t.name, t.task_type, f.name, t.vcluster, t.state, t.draft, t.deployed_version, t.incarnation, t.last_error, t.created_at, t.updated_at";
const RUN_COLUMNS: &str = "r.id, t.name, r.version, r.incarnation, r.status, r.started_at, r.ended_at, r.end_reason, r.rows_synced, (SELECT count(*) FROM attempts a WHERE a.run_id = r.id)";
const ATTEMPT_COLUMNS: &str = "run_id, attempt, status, reason, started_at, ended_at, error, error_kind, worker_id";
const DS_COLUMNS: &str = "id, name, ds_type, properties, created_at";

impl Catalog {
    /// Opens (creating and migrating) the PostgreSQL catalog at `url`, or else
    /// `<dir>/catalog.db`. Returns whether it was created.
    pub async fn open(url: Option<&str>, dir: &Path) -> Result<(Self, bool)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("creating the data directory {}: {e}", dir.display())))?;
        let db = Db::open(url, &dir.join(CATALOG_FILE)).await?;
        let created = migrate(&db).await?;
        Ok((Self { db }, created))
    }

    /// The database, for the modules that keep tables of their own in it (leases).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Where the catalog is: the SQLite file, or the PostgreSQL URL without its password.
    pub fn location(&self) -> &str {
        self.db.location()
    }

    /// The same catalog through connections of its own (see [`Db::separate`]).
    pub async fn separate(&self) -> Result<Self> {
        Ok(Self { db: self.db.separate().await? })
    }

    // ---- data sources ----

    pub async fn insert_datasource(
        &self,
        name: &str,
        ds_type: DsType,
        properties: &BTreeMap<String, String>,
    ) -> Result<DataSource> {
        let props = serde_json::to_string(properties)?;
        self.db
            .execute(
                "INSERT INTO datasources (name, ds_type, properties, created_at) VALUES ($1, $2, $3, $4)",
                params![name, ds_type.id(), props, now()],
            )
            .await?;
        self.datasource(name).await?.ok_or_else(|| Error::internal("data source vanished after insert"))
    }

    pub async fn datasource(&self, name: &str) -> Result<Option<DataSource>> {
        let sql = format!("SELECT {DS_COLUMNS} FROM datasources WHERE name = $1");
        self.db.query_opt(&sql, params![name]).await?.map(|r| ds_row(&r)).transpose()
    }

    pub async fn datasources(&self) -> Result<Vec<DataSource>> {
        let sql = format!("SELECT {DS_COLUMNS} FROM datasources ORDER BY name");
        self.db.query(&sql, &[]).await?.iter().map(ds_row).collect()
    }

    /// Replaces the stored properties of data sources (secrets sealed under a new key), all
    /// in one transaction: a catalog never holds secrets under two keys.
    pub async fn update_datasource_properties(&self, updates: &[(i64, BTreeMap<String, String>)]) -> Result<()> {
        let mut tx = self.db.begin().await?;
        for (id, properties) in updates {
            let props = serde_json::to_string(properties)?;
            tx.execute("UPDATE datasources SET properties = $2 WHERE id = $1", params![*id, props]).await?;
        }
        tx.commit().await
    }

    /// Rebuilds the storage so that no earlier version of a changed row stays in it: SQLite
    /// moves the write-ahead log into the file, empties it and rebuilds the file; PostgreSQL
    /// rewrites the data sources' table (`VACUUM FULL`), dropping its dead row versions.
    pub async fn compact(&self) -> Result<()> {
        let mut conn = self.db.conn().await?;
        match self.db.dialect() {
            Dialect::Sqlite => {
                conn.query("PRAGMA wal_checkpoint(TRUNCATE)", &[]).await?;
                conn.batch("VACUUM").await?;
                conn.query("PRAGMA wal_checkpoint(TRUNCATE)", &[]).await?;
            }
            Dialect::Postgres => conn.batch("VACUUM FULL datasources").await?,
        }
        Ok(())
    }

    pub async fn delete_datasource(&self, name: &str) -> Result<()> {
        self.db.execute("DELETE FROM datasources WHERE name = $1", params![name]).await?;
        Ok(())
    }

    // ---- vclusters ----

    pub async fn insert_vcluster(&self, name: &str, vcluster_type: &str, slots: i64) -> Result<VCluster> {
        self.db
            .execute(
                "INSERT INTO vclusters (name, vcluster_type, slots, created_at) VALUES ($1, $2, $3, $4)",
                params![name, vcluster_type, slots, now()],
            )
            .await?;
        self.vcluster(name).await?.ok_or_else(|| Error::internal("vcluster vanished after insert"))
    }

    pub async fn vcluster(&self, name: &str) -> Result<Option<VCluster>> {
        Ok(self.vclusters().await?.into_iter().find(|v| v.name == name))
    }

    /// Every vcluster with the running tasks that hold its slots.
    pub async fn vclusters(&self) -> Result<Vec<VCluster>> {
        let mut out = self
            .db
            .query("SELECT id, name, vcluster_type, slots, created_at FROM vclusters ORDER BY name", &[])
            .await?
            .iter()
            .map(|r| {
                Ok(VCluster {
                    id: r.i64(0)?,
                    name: r.text(1)?,
                    vcluster_type: r.text(2)?,
                    slots: r.i64(3)?,
                    slots_used: 0,
                    tasks: Vec::new(),
                    created_at: r.text(4)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let running = self
            .db
            .query("SELECT vcluster, name FROM tasks WHERE state = 'running' ORDER BY name", &[])
            .await?
            .iter()
            .map(|r| Ok((r.text(0)?, r.text(1)?)))
            .collect::<Result<Vec<_>>>()?;
        for v in &mut out {
            v.tasks = running.iter().filter(|(vc, _)| *vc == v.name).map(|(_, t)| t.clone()).collect();
            v.slots_used = v.tasks.len() as i64;
        }
        Ok(out)
    }

    pub async fn delete_vcluster(&self, name: &str) -> Result<()> {
        self.db.execute("DELETE FROM vclusters WHERE name = $1", params![name]).await?;
        Ok(())
    }

    // ---- folders ----

    pub async fn insert_folder(&self, name: &str) -> Result<Folder> {
        self.db.execute("INSERT INTO folders (name, created_at) VALUES ($1, $2)", params![name, now()]).await?;
        self.folder(name).await?.ok_or_else(|| Error::internal("folder vanished after insert"))
    }

    pub async fn folder(&self, name: &str) -> Result<Option<Folder>> {
        Ok(self.folders().await?.into_iter().find(|f| f.name == name))
    }

    pub async fn folders(&self) -> Result<Vec<Folder>> {
        self.db
            .query(
                "SELECT f.id, f.name, (SELECT count(*) FROM tasks t WHERE t.folder_id = f.id), f.created_at FROM folders f ORDER BY f.name",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok(Folder { id: r.i64(0)?, name: r.text(1)?, tasks: r.i64(2)?, created_at: r.text(3)? }))
            .collect()
    }

    pub async fn delete_folder(&self, name: &str) -> Result<()> {
        self.db.execute("DELETE FROM folders WHERE name = $1", params![name]).await?;
        Ok(())
    }

    // ---- tasks ----

    pub async fn insert_task(&self, name: &str, task_type: i64, folder_id: i64, vcluster: &str) -> Result<Task> {
        let draft = serde_json::to_string(&TaskConfig::default())?;
        let ts = now();
        self.db
            .execute(
                "INSERT INTO tasks (name, task_type, folder_id, vcluster, draft, state, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'draft', $6, $6)",
                params![name, task_type, folder_id, vcluster, draft, ts],
            )
            .await?;
        self.task(name).await?.ok_or_else(|| Error::internal("task vanished after insert"))
    }

    pub async fn task(&self, name: &str) -> Result<Option<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t JOIN folders f ON f.id = t.folder_id WHERE t.name = $1");
        self.db.query_opt(&sql, params![name]).await?.map(|r| task_row(&r)).transpose()
    }

    pub async fn task_by_id(&self, id: i64) -> Result<Option<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t JOIN folders f ON f.id = t.folder_id WHERE t.id = $1");
        self.db.query_opt(&sql, params![id]).await?.map(|r| task_row(&r)).transpose()
    }

    pub async fn tasks(&self, folder: Option<&str>) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks t JOIN folders f ON f.id = t.folder_id WHERE (CAST($1 AS TEXT) IS NULL OR f.name = $1) ORDER BY t.name"
        );
        self.db.query(&sql, params![folder]).await?.iter().map(task_row).collect()
    }

    pub async fn update_draft(&self, id: i64, draft: &TaskConfig, vcluster: &str) -> Result<()> {
        let text = serde_json::to_string(draft)?;
        self.db
            .execute(
                "UPDATE tasks SET draft = $2, vcluster = $3, updated_at = $4 WHERE id = $1",
                params![id, text, vcluster, now()],
            )
            .await?;
        Ok(())
    }

    pub async fn set_state(&self, id: i64, state: TaskState) -> Result<()> {
        self.db
            .execute("UPDATE tasks SET state = $2, updated_at = $3 WHERE id = $1", params![id, state.as_str(), now()])
            .await?;
        Ok(())
    }

    pub async fn set_last_error(&self, id: i64, error: Option<&str>) -> Result<()> {
        self.db.execute("UPDATE tasks SET last_error = $2 WHERE id = $1", params![id, error]).await?;
        Ok(())
    }

    /// Publishes `config` as the task's next version, in `incarnation`; returns the version.
    pub async fn publish(&self, id: i64, config: &TaskConfig, incarnation: i64) -> Result<i64> {
        let text = serde_json::to_string(config)?;
        let mut tx = self.db.begin().await?;
        let next = tx
            .query_one("SELECT coalesce(max(version), 0) + 1 FROM task_versions WHERE task_id = $1", params![id])
            .await?
            .i64(0)?;
        let ts = now();
        tx.execute(
            "INSERT INTO task_versions (task_id, version, config, incarnation, published_at) VALUES ($1, $2, $3, $4, $5)",
            params![id, next, text, incarnation, ts.as_str()],
        )
        .await?;
        tx.execute(
            "UPDATE tasks SET deployed_version = $2, incarnation = $3, updated_at = $4 WHERE id = $1",
            params![id, next, incarnation, ts],
        )
        .await?;
        tx.commit().await?;
        Ok(next)
    }

    pub async fn version(&self, task_id: i64, version: i64) -> Result<Option<Version>> {
        let row = self
            .db
            .query_opt(
                "SELECT version, config, incarnation, published_at FROM task_versions WHERE task_id = $1 AND version = $2",
                params![task_id, version],
            )
            .await?;
        row.map(|r| {
            Ok(Version {
                version: r.i64(0)?,
                config: serde_json::from_str(&r.text(1)?)?,
                incarnation: r.i64(2)?,
                published_at: r.text(3)?,
            })
        })
        .transpose()
    }

    /// The task's deployed version, if it has one.
    pub async fn deployed(&self, task: &Task) -> Result<Option<Version>> {
        match task.deployed_version {
            Some(v) => self.version(task.id, v).await,
            None => Ok(None),
        }
    }

    /// The latest published version, deployed or not.
    pub async fn latest_version(&self, task_id: i64) -> Result<Option<Version>> {
        let latest =
            self.db.query_one("SELECT max(version) FROM task_versions WHERE task_id = $1", params![task_id]).await?;
        match latest.opt_i64(0)? {
            Some(v) => self.version(task_id, v).await,
            None => Ok(None),
        }
    }

    /// Forgets the deployment: draft state, no deployed version, the next incarnation (so the
    /// next deploy has a new Delta application id), no saved status.
    pub async fn undeploy(&self, id: i64) -> Result<i64> {
        let mut tx = self.db.begin().await?;
        tx.execute(
            "UPDATE tasks SET state = 'draft', deployed_version = NULL, incarnation = incarnation + 1, last_error = NULL, updated_at = $2 WHERE id = $1",
            params![id, now()],
        )
        .await?;
        tx.execute("DELETE FROM task_status WHERE task_id = $1", params![id]).await?;
        let inc = tx.query_one("SELECT incarnation FROM tasks WHERE id = $1", params![id]).await?.i64(0)?;
        tx.commit().await?;
        Ok(inc)
    }

    pub async fn delete_task(&self, id: i64) -> Result<()> {
        let mut tx = self.db.begin().await?;
        tx.execute("DELETE FROM attempt_logs WHERE run_id IN (SELECT id FROM runs WHERE task_id = $1)", params![id])
            .await?;
        tx.execute("DELETE FROM tasks WHERE id = $1", params![id]).await?;
        tx.commit().await
    }

    // ---- runs and attempts ----

    pub async fn insert_run(&self, task_id: i64, version: i64, incarnation: i64) -> Result<i64> {
        self.db
            .query_one(
                "INSERT INTO runs (task_id, version, incarnation, status, started_at) VALUES ($1, $2, $3, 'running', $4) RETURNING id",
                params![task_id, version, incarnation, now()],
            )
            .await?
            .i64(0)
    }

    pub async fn end_run(&self, run_id: i64, status: &str, reason: &str) -> Result<()> {
        self.db
            .execute(
                "UPDATE runs SET status = $2, end_reason = $3, ended_at = $4 WHERE id = $1 AND ended_at IS NULL",
                params![run_id, status, reason, now()],
            )
            .await?;
        Ok(())
    }

    pub async fn add_run_rows(&self, run_id: i64, rows: i64) -> Result<()> {
        self.db.execute("UPDATE runs SET rows_synced = rows_synced + $2 WHERE id = $1", params![run_id, rows]).await?;
        Ok(())
    }

    pub async fn run(&self, id: i64) -> Result<Option<Run>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.id = $1");
        self.db.query_opt(&sql, params![id]).await?.map(|r| run_row(&r)).transpose()
    }

    pub async fn runs(&self, task_id: i64) -> Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.task_id = $1 ORDER BY r.id DESC"
        );
        self.db.query(&sql, params![task_id]).await?.iter().map(run_row).collect()
    }

    /// The task's run that has not ended, if any.
    pub async fn open_run(&self, task_id: i64) -> Result<Option<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN tasks t ON t.id = r.task_id WHERE r.task_id = $1 AND r.ended_at IS NULL ORDER BY r.id DESC LIMIT 1"
        );
        self.db.query_opt(&sql, params![task_id]).await?.map(|r| run_row(&r)).transpose()
    }

    pub async fn insert_attempt(&self, run_id: i64, reason: &str, worker: &str) -> Result<i64> {
        let mut tx = self.db.begin().await?;
        let n = tx
            .query_one("SELECT coalesce(max(attempt), 0) + 1 FROM attempts WHERE run_id = $1", params![run_id])
            .await?
            .i64(0)?;
        tx.execute(
            "INSERT INTO attempts (run_id, attempt, status, reason, started_at, worker_id) VALUES ($1, $2, 'running', $3, $4, $5)",
            params![run_id, n, reason, now(), worker],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    pub async fn end_attempt(
        &self,
        run_id: i64,
        attempt: i64,
        status: &str,
        error: Option<&str>,
        kind: Option<&str>,
    ) -> Result<()> {
        self.db
            .execute(
                "UPDATE attempts SET status = $3, error = $4, error_kind = $5, ended_at = $6 WHERE run_id = $1 AND attempt = $2",
                params![run_id, attempt, status, error, kind, now()],
            )
            .await?;
        Ok(())
    }

    pub async fn attempts(&self, run_id: i64) -> Result<Vec<Attempt>> {
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = $1 ORDER BY attempt");
        self.db.query(&sql, params![run_id]).await?.iter().map(attempt_row).collect()
    }

    /// At start-up: attempts still marked running belong to a daemon that died without ending
    /// them (SIGKILL, crash, power loss).
    pub async fn mark_lost_attempts(&self) -> Result<u64> {
        self.db.execute(
            "UPDATE attempts SET status = 'lost', ended_at = $1, error = coalesce(error, 'the daemon stopped without ending this attempt (killed or crashed); the next attempt resumed from the table''s checkpoint') WHERE ended_at IS NULL",
            params![now()],
        ).await
    }

    pub async fn log_lines(&self, run_id: i64, attempt: i64) -> Result<Vec<LogLine>> {
        self.db
            .query(
                "SELECT ts, level, message FROM attempt_logs WHERE run_id = $1 AND attempt = $2 ORDER BY id",
                params![run_id, attempt],
            )
            .await?
            .iter()
            .map(|r| Ok(LogLine { ts: r.text(0)?, level: r.text(1)?, message: r.text(2)? }))
            .collect()
    }

    /// Appends log lines in one transaction (the log writer's catalog).
    pub async fn append_log_lines(&self, lines: &[(i64, i64, LogLine)]) -> Result<()> {
        let mut tx = self.db.begin().await?;
        for (run, attempt, line) in lines {
            tx.execute(
                "INSERT INTO attempt_logs (run_id, attempt, ts, level, message) VALUES ($1, $2, $3, $4, $5)",
                params![*run, *attempt, line.ts.as_str(), line.level.as_str(), line.message.as_str()],
            )
            .await?;
        }
        tx.commit().await
    }

    // ---- last known status ----

    pub async fn save_status(
        &self,
        task_id: i64,
        position: Option<&str>,
        epoch: Option<i64>,
        rows_delta: i64,
        last_commit_at: Option<&str>,
    ) -> Result<()> {
        self.db.execute(
            "INSERT INTO task_status (task_id, position, epoch, rows_synced, last_commit_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (task_id) DO UPDATE SET position = coalesce(excluded.position, task_status.position), epoch = coalesce(excluded.epoch, task_status.epoch),
               rows_synced = task_status.rows_synced + excluded.rows_synced, last_commit_at = coalesce(excluded.last_commit_at, task_status.last_commit_at), updated_at = excluded.updated_at",
            params![task_id, position, epoch, rows_delta, last_commit_at, now()],
        ).await?;
        Ok(())
    }

    /// (position, epoch, rows synced, last commit time).
    pub async fn status(&self, task_id: i64) -> Result<Option<SavedStatus>> {
        let row = self
            .db
            .query_opt(
                "SELECT position, epoch, rows_synced, last_commit_at FROM task_status WHERE task_id = $1",
                params![task_id],
            )
            .await?;
        row.map(|r| {
            Ok(SavedStatus {
                position: r.opt_text(0)?,
                epoch: r.opt_i64(1)?,
                rows_synced: r.i64(2)?,
                last_commit_at: r.opt_text(3)?,
            })
        })
        .transpose()
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

fn ds_row(r: &Row) -> Result<DataSource> {
    let name = r.text(1)?;
    let id = r.i64(2)?;
    let ds_type = DsType::from_id(id)
        .ok_or_else(|| Error::internal(format!("data source {name} has an unknown ds_type {id}")))?;
    Ok(DataSource {
        id: r.i64(0)?,
        name,
        ds_type,
        ds_type_id: ds_type.id(),
        properties: serde_json::from_str(&r.text(3)?)?,
        created_at: r.text(4)?,
    })
}

fn task_row(r: &Row) -> Result<Task> {
    Ok(Task {
        id: r.i64(0)?,
        name: r.text(1)?,
        task_type: r.i64(2)?,
        folder: r.text(3)?,
        vcluster: r.text(4)?,
        state: TaskState::parse(&r.text(5)?)?,
        draft: serde_json::from_str(&r.text(6)?)?,
        deployed_version: r.opt_i64(7)?,
        incarnation: r.i64(8)?,
        last_error: r.opt_text(9)?,
        created_at: r.text(10)?,
        updated_at: r.text(11)?,
    })
}

fn run_row(r: &Row) -> Result<Run> {
    Ok(Run {
        id: r.i64(0)?,
        task: r.text(1)?,
        version: r.i64(2)?,
        incarnation: r.i64(3)?,
        status: r.text(4)?,
        started_at: r.text(5)?,
        ended_at: r.opt_text(6)?,
        end_reason: r.opt_text(7)?,
        rows_synced: r.i64(8)?,
        attempts: r.i64(9)?,
    })
}

fn attempt_row(r: &Row) -> Result<Attempt> {
    Ok(Attempt {
        run_id: r.i64(0)?,
        attempt: r.i64(1)?,
        status: r.text(2)?,
        reason: r.text(3)?,
        started_at: r.text(4)?,
        ended_at: r.opt_text(5)?,
        error: r.opt_text(6)?,
        error_kind: r.opt_text(7)?,
        worker: r.opt_text(8)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The same calls on either catalog (PostgreSQL: `RTSYNC_PG_URL`, a schema of its own).
    async fn round_trip(cat: &Catalog) {
        let folder = cat.insert_folder("f").await.unwrap();
        cat.insert_vcluster("v", "SYNC", 2).await.unwrap();
        let t = cat.insert_task("t1", 14, folder.id, "v").await.unwrap();
        assert_eq!(t.state, TaskState::Draft);
        assert_eq!(t.incarnation, 1);
        let cfg = TaskConfig { source: Some("k".into()), source_table: Some("orders".into()), ..Default::default() };
        cat.update_draft(t.id, &cfg, "v").await.unwrap();
        let v = cat.publish(t.id, &cfg, 1).await.unwrap();
        assert_eq!(v, 1);
        cat.set_state(t.id, TaskState::Running).await.unwrap();
        assert_eq!(cat.vcluster("v").await.unwrap().unwrap().slots_used, 1);
        let run = cat.insert_run(t.id, v, 1).await.unwrap();
        assert_eq!(cat.insert_attempt(run, "deploy", "w1").await.unwrap(), 1);
        assert_eq!(cat.insert_attempt(run, "retry", "w1").await.unwrap(), 2);
        assert_eq!(cat.mark_lost_attempts().await.unwrap(), 2);
        assert_eq!(cat.run(run).await.unwrap().unwrap().attempts, 2);
        cat.save_status(t.id, Some("p1"), Some(3), 10, None).await.unwrap();
        cat.save_status(t.id, None, None, 5, Some("2026-01-01T00:00:00Z")).await.unwrap();
        let s = cat.status(t.id).await.unwrap().unwrap();
        assert_eq!((s.position.as_deref(), s.epoch, s.rows_synced), (Some("p1"), Some(3), 15));
        let line = LogLine { ts: now(), level: "INFO".into(), message: "it's here".into() };
        cat.append_log_lines(&[(run, 2, line.clone())]).await.unwrap();
        assert_eq!(cat.log_lines(run, 2).await.unwrap(), vec![line]);
        assert_eq!(cat.undeploy(t.id).await.unwrap(), 2);
        let t = cat.task("t1").await.unwrap().unwrap();
        assert_eq!((t.state, t.deployed_version, t.app_id()), (TaskState::Draft, None, "t1.2".to_string()));
        assert_eq!(cat.version(t.id, 1).await.unwrap().unwrap().config, cfg);
        assert!(cat.insert_folder("f").await.unwrap_err().message.contains("refused"));
        cat.insert_folder("B").await.unwrap();
        cat.insert_folder("a").await.unwrap();
        let names: Vec<String> = cat.folders().await.unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["B", "a", "f"]);
        assert_eq!(cat.tasks(Some("f")).await.unwrap().len(), 1);
        assert_eq!(cat.tasks(Some("a")).await.unwrap().len(), 0);
        assert_eq!(cat.tasks(None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn postgres_migrates_once_and_round_trips_tasks() {
        let url = crate::db::test_database("scale_catalog").await;
        let dir = tempfile::tempdir().unwrap();
        let (cat, created) = Catalog::open(Some(&url), dir.path()).await.unwrap();
        assert!(created);
        let (_again, created) = Catalog::open(Some(&url), dir.path()).await.unwrap();
        assert!(!created);
        assert!(!dir.path().join(CATALOG_FILE).exists(), "no SQLite file beside a PostgreSQL catalog");
        round_trip(&cat).await;
    }

    #[tokio::test]
    async fn sqlite_migrates_once_and_round_trips_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let (cat, created) = Catalog::open(None, dir.path()).await.unwrap();
        assert!(created);
        let (_again, created) = Catalog::open(None, dir.path()).await.unwrap();
        assert!(!created);
        round_trip(&cat).await;
    }
}
