//! The daemon's commands: `rtsync serve`, and the client commands that talk to it over its
//! HTTP API (`datasource`, `vcluster`, `folder`, `meta`, `task`, `runs`, `attempts`), with the
//! verbs of the seed's `cz-cli`.
//!
//! Conventions: `--server URL` (default `http://127.0.0.1:7878`, or `RTSYNC_SERVER`) and
//! `--format table|json` on every command; a failure exits non-zero with a one-line reason;
//! `-y` skips a confirmation (required when stdin is not a terminal).

mod output;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use rtsync_control::error::{Code, Error};
use rtsync_control::http::{ErrorBody, client};
use rtsync_control::model::*;
use rtsync_control::secrets::{SecretKey, Secrets};
use rtsync_control::service::parse_column_arg;
use rtsync_core::{ErrorKind, ErrorPolicy, SyncError, SyncResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// The client flags, which every daemon command takes.
const CLIENT_FLAGS: [&str; 3] = ["--server", "--token", "--format"];

/// Lets the client flags come before the command too: `rtsync --server URL task list` is
/// read as `rtsync task --server URL list` (clap takes them after the command group).
pub fn client_flags_anywhere(args: Vec<String>) -> Vec<String> {
    let mut moved = Vec::new();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    let program = it.next();
    let mut it = it.peekable();
    while let Some(arg) = it.next() {
        let name = arg.split('=').next().unwrap_or("");
        if !rest.is_empty() || !CLIENT_FLAGS.contains(&name) {
            rest.push(arg);
            continue;
        }
        let takes_value = !arg.contains('=');
        moved.push(arg);
        if takes_value && let Some(value) = it.next() {
            moved.push(value);
        }
    }
    let mut out: Vec<String> = program.into_iter().collect();
    if rest.is_empty() {
        out.extend(moved);
        return out;
    }
    let mut rest = rest.into_iter();
    out.extend(rest.next());
    out.extend(moved);
    out.extend(rest);
    out
}

/// How to reach the daemon and how to print; accepted after any subcommand.
#[derive(Args, Clone, Debug)]
pub struct ClientArgs {
    /// The daemon's URL.
    #[arg(long, global = true, env = "RTSYNC_SERVER", default_value = DEFAULT_SERVER)]
    pub server: String,
    /// The daemon's API token, when it requires one.
    #[arg(long, global = true, env = "RTSYNC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Output of read commands: table for people, json (the API's answer) for scripts.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub format: Format,
}

#[derive(Subcommand, Debug)]
pub enum DaemonCommand {
    /// Run the daemon: catalog, scheduler of deployed tasks, HTTP API and /metrics.
    Serve {
        /// Where the catalog (catalog.db) and the default lakehouse live.
        #[arg(long, default_value = rtsync_control::daemon::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// A PostgreSQL catalog shared by several workers (postgres://USER:PASSWORD@HOST/DB,
        /// sslmode as libpq); without it, the SQLite catalog.db in --data-dir.
        #[arg(long, env = "RTSYNC_CATALOG", hide_env_values = true)]
        catalog: Option<String>,
        /// The root of the default `lakehouse` data source when the catalog is created:
        /// required with --catalog (a root every worker reaches: s3://…, az://…, gs://…, or a
        /// shared directory); default `<data dir>/lakehouse`.
        #[arg(long, env = "RTSYNC_LAKEHOUSE_ROOT")]
        lakehouse_root: Option<String>,
        /// Also serve GET /metrics (and /health) on this address, without the token.
        #[arg(long, value_name = "ADDR")]
        metrics_listen: Option<String>,
        /// With --catalog: run only the tasks of this Sync VCluster (default `default`).
        #[arg(long, env = "RTSYNC_VCLUSTER")]
        vcluster: Option<String>,
        /// With --catalog: this worker's id in `workers list` and in the leases (default
        /// `<host name>-<pid>`).
        #[arg(long, env = "RTSYNC_WORKER_ID")]
        worker_id: Option<String>,
        /// The URL other workers and `workers list` show for this worker's API (default
        /// `http://<listen address>`).
        #[arg(long, env = "RTSYNC_ADVERTISE", value_name = "URL")]
        advertise: Option<String>,
        /// With --catalog: how long a task lease lasts without a renewal (renewed every third
        /// of it); a killed worker's tasks run elsewhere within about this long.
        #[arg(long, env = "RTSYNC_LEASE_TTL", default_value = "20s", value_parser = parse_duration)]
        lease_ttl: std::time::Duration,
        /// Address of the HTTP API.
        #[arg(long, default_value = rtsync_control::daemon::DEFAULT_LISTEN)]
        listen: String,
        /// A file holding the API token that every request must carry (RTSYNC_TOKEN also sets
        /// it). Required to listen on an address other than loopback.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Listen on a non-loopback address without a token.
        #[arg(long)]
        insecure_no_auth: bool,
        /// A host name the API answers to, besides localhost, loopback addresses and the
        /// listen address (repeatable; `*` for any). Other `Host` headers are refused, which
        /// stops DNS-rebinding pages.
        #[arg(long = "allowed-host", value_name = "HOST")]
        allowed_hosts: Vec<String>,
        /// A web origin (`https://app.example`) allowed to call the API from its pages: the
        /// daemon answers it with CORS headers (repeatable). Without it, no CORS.
        #[arg(long = "allowed-origin", value_name = "ORIGIN")]
        allowed_origins: Vec<String>,
        /// A file holding the key that encrypts secrets in the catalog: 32 bytes as 64 hex
        /// digits or base64 (RTSYNC_SECRET_KEY also sets it; `rtsync secrets keygen` makes
        /// one). Without a key, secrets are stored in plaintext.
        #[arg(long)]
        secret_key_file: Option<PathBuf>,
        /// Data sources may reference secret files under this directory (password_file=NAME);
        /// without it, file references are refused.
        #[arg(long)]
        secrets_dir: Option<PathBuf>,
        /// Data sources may reference environment variables whose name starts with this
        /// (password_env=NAME).
        #[arg(long, default_value = rtsync_control::secrets::DEFAULT_ENV_PREFIX)]
        secret_env_prefix: String,
    },
    /// The catalog's secrets: make a key, re-encrypt under a new one.
    Secrets {
        #[command(subcommand)]
        cmd: SecretsCmd,
    },
    /// A Model Context Protocol server on stdio (the seed's MCP tools: list_data_sources,
    /// create_task, save_integration_task, publish_task, …), a client of the daemon at --server.
    Mcp {
        /// The daemon's URL.
        #[arg(long, env = "RTSYNC_SERVER", default_value = DEFAULT_SERVER)]
        server: String,
        /// The daemon's API token, when it requires one.
        #[arg(long, env = "RTSYNC_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Data sources: named connections (Kafka, MySQL, PostgreSQL, …, Lakehouse).
    Datasource {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: DatasourceCmd,
    },
    /// The workers (`rtsync serve` processes) of the catalog and the tasks each runs.
    Workers {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: WorkersCmd,
    },
    /// SYNC vclusters: the worker capacity tasks run on.
    Vcluster {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: VclusterCmd,
    },
    /// Alert rules: a webhook or a log line when a task fails or falls behind.
    Alert {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: AlertCmd,
    },
    /// Folders that group tasks.
    Folder {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: FolderCmd,
    },
    /// Browse a data source: namespaces, objects (topics/tables), columns.
    Meta {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: MetaCmd,
    },
    /// Delta tables of a lakehouse data source: health, compaction, vacuum.
    Table {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: TableCmd,
    },
    /// Real-time sync tasks: create, configure, preview, deploy, stop, start, undeploy, show.
    Task {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: TaskCmd,
    },
    /// Runs of a task: one per deploy/start, until stopped.
    Runs {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: RunsCmd,
    },
    /// Attempts of a run and their logs.
    Attempts {
        #[command(flatten)]
        client: ClientArgs,
        #[command(subcommand)]
        cmd: AttemptsCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCmd {
    /// Print a new random key (64 hex digits) for RTSYNC_SECRET_KEY or --secret-key-file.
    Keygen,
    /// Re-encrypt every stored secret under a new key (run it with the daemon stopped). The
    /// current key comes from RTSYNC_SECRET_KEY or --secret-key-file (none: the secrets are in
    /// plaintext now); the new one from RTSYNC_NEW_SECRET_KEY or --new-key-file.
    Rotate {
        #[arg(long, default_value = rtsync_control::daemon::DEFAULT_DATA_DIR)]
        data_dir: PathBuf,
        /// The PostgreSQL catalog the workers share (stop every worker first).
        #[arg(long, env = "RTSYNC_CATALOG", hide_env_values = true)]
        catalog: Option<String>,
        /// The current key's file.
        #[arg(long)]
        secret_key_file: Option<PathBuf>,
        /// The new key's file.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
        /// Decrypt the secrets and store them in plaintext (no new key).
        #[arg(long, conflicts_with = "new_key_file")]
        to_plaintext: bool,
    },
}

/// The variable `secrets rotate` reads the new key from.
pub const NEW_KEY_ENV: &str = "RTSYNC_NEW_SECRET_KEY";

#[derive(Subcommand, Debug)]
pub enum DatasourceCmd {
    /// Create a data source: --type kafka|mysql|postgresql|sqlserver|aurora-mysql|aurora-postgresql|polardb-mysql|polardb-postgresql|lakehouse (or its ds_type number).
    Create {
        name: String,
        #[arg(long = "type")]
        ds_type: String,
        /// A property, repeatable: bootstrap.servers=HOST:PORT and any librdkafka setting for
        /// Kafka; url=…, user=…, password=… for databases; root=DIR for a lakehouse.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// List data sources.
    List {
        /// Only this type (name or ds_type number).
        #[arg(long = "type")]
        ds_type: Option<String>,
    },
    /// Show one data source (secrets are never shown).
    Show { name: String },
    /// Connect and say what is wrong, if anything.
    Test {
        name: String,
        /// Also check this topic (Kafka) or SCHEMA.TABLE (PostgreSQL).
        #[arg(long)]
        object: Option<String>,
    },
    /// Delete a data source (refused while a task uses it).
    Delete {
        name: String,
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum WorkersCmd {
    /// Every worker: id, address, vcluster, state, tasks, last heartbeat, version.
    List,
}

#[derive(Subcommand, Debug)]
pub enum VclusterCmd {
    /// List vclusters with their slots and running tasks.
    List,
    /// Create a vcluster.
    Create {
        name: String,
        /// SYNC for real-time sync tasks (GENERAL and ANALYTICS exist but cannot run them).
        #[arg(long = "type", default_value = "SYNC")]
        vcluster_type: String,
        /// How many tasks can run on it at once.
        #[arg(long, default_value_t = DEFAULT_VCLUSTER_SLOTS)]
        slots: i64,
    },
    /// Show one vcluster.
    Show { name: String },
    /// Delete a vcluster (refused while tasks run on it).
    Delete {
        name: String,
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// The rules, with how many of their alerts fire now.
    List,
    /// Alerts that fire now (--all: the history too), of every rule.
    Events {
        #[arg(long)]
        all: bool,
    },
    /// Create a rule: `--when failed|freshness>30s|lag>N|no-data>10m|retries>N|dlq-rate>N`
    /// over one task, or every task of a folder or vcluster.
    Create {
        name: String,
        #[arg(long, conflicts_with_all = ["folder", "vcluster"])]
        task: Option<String>,
        #[arg(long, conflicts_with = "vcluster")]
        folder: Option<String>,
        #[arg(long)]
        vcluster: Option<String>,
        /// failed, freshness>DURATION, lag>N (the source's unit), no-data>DURATION, retries>N,
        /// dlq-rate>N (N and retries within 10 minutes).
        #[arg(long)]
        when: String,
        /// The grace period: fire only when the condition held this long (e.g. 1m).
        #[arg(long = "for")]
        grace: Option<String>,
        /// POST a JSON notification here on firing and on resolution.
        #[arg(long)]
        webhook: Option<String>,
        /// Sign the webhook's body: `X-Rtsync-Signature: sha256=<HMAC-SHA256 hex>`.
        #[arg(long)]
        secret: Option<String>,
    },
    /// The rule and its recent alerts.
    Show { name: String },
    /// Delete a rule and its alerts' history.
    Delete {
        name: String,
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Send a test notification through the rule's webhook now.
    Test { name: String },
}

#[derive(Subcommand, Debug)]
pub enum FolderCmd {
    List,
    Create {
        name: String,
    },
    /// Delete an empty folder.
    Delete {
        name: String,
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum MetaCmd {
    /// Namespaces of a data source (Kafka: `default`; Lakehouse: schemas).
    Namespaces { datasource: String },
    /// Objects in a namespace (Kafka: topics with partitions and offsets; Lakehouse: tables).
    Objects { datasource: String, namespace: String },
    /// Columns of an object (Kafka: fields inferred from sampled JSON values, with JSONPath).
    Detail {
        datasource: String,
        namespace: String,
        object: String,
        /// Messages to sample (Kafka).
        #[arg(long, default_value_t = 100)]
        sample: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum TableCmd {
    /// Version, active files, size, small files, last compaction, vacuum and log checkpoint.
    Info {
        /// A lakehouse data source.
        datasource: String,
        /// SCHEMA.TABLE (or TABLE in schema public).
        table: String,
    },
    /// Compact the table's small files now (a separate commit, dataChange=false; safe while a
    /// task writes the table).
    Optimize { datasource: String, table: String },
    /// Enable deletion vectors, so CDC tasks apply changes merge-on-read (from their next
    /// start). Readers without deletion-vector support can no longer read the table.
    Upgrade { datasource: String, table: String },
    /// Delete data files no longer in the table, after the retention.
    Vacuum {
        datasource: String,
        table: String,
        /// Only list the files that would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// How long a removed file is kept (default: the table's vacuum retention, 7d).
        #[arg(long)]
        retention: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// Create a task (draft). Only --type REALTIME (task_type 14) exists in rtsync.
    Create {
        name: String,
        #[arg(long = "type", default_value = "REALTIME")]
        task_type: String,
        #[arg(long)]
        folder: Option<String>,
        /// A SYNC vcluster (default: `default`).
        #[arg(long)]
        vcluster: Option<String>,
    },
    /// Change the draft: source, target, start offset, columns, error policy.
    Configure(Box<ConfigureArgs>),
    /// Read a sample from the source and print the mapped rows; writes nothing.
    Preview {
        name: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Compare the source table with the Delta table: row counts and per-key-range checksums
    /// computed on both sides, then the keys that differ (re-checked once the task has caught
    /// up); exits non-zero when differences persist.
    Verify { name: String },
    /// Publish the draft as a new version and start it (continuously, no schedule).
    Deploy {
        name: String,
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Stop the task; it keeps its position.
    Stop { name: String },
    /// Start a stopped or failed task from its position.
    Start { name: String },
    /// Stop the task and forget its position: the next deploy starts afresh.
    Undeploy {
        name: String,
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
    /// Status, version, position, lag, rows, rows/s, freshness, last error.
    Show { name: String },
    /// List tasks.
    List {
        #[arg(long)]
        folder: Option<String>,
    },
    /// Published versions of a task.
    Versions { name: String },
    /// Delete a task that is not deployed.
    Delete {
        name: String,
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
}

#[derive(Args, Debug)]
pub struct ConfigureArgs {
    name: String,
    /// The source data source.
    #[arg(long)]
    source: Option<String>,
    /// Database/schema (Kafka: default).
    #[arg(long)]
    source_schema: Option<String>,
    /// Table or topic.
    #[arg(long)]
    source_table: Option<String>,
    /// The target Lakehouse data source (default: lakehouse).
    #[arg(long)]
    sink: Option<String>,
    /// Target schema (default: public).
    #[arg(long)]
    sink_schema: Option<String>,
    /// Target table (default: the source table's name).
    #[arg(long)]
    sink_table: Option<String>,
    /// Kafka: earliest, latest, timestamp:EPOCH_MS, an RFC 3339 time, or PARTITION:OFFSET,…
    #[arg(long)]
    start_offset: Option<String>,
    /// A target column, repeatable: 'name=$.json.path:type' (or a built-in field: key, value,
    /// timestamp, partition, offset, headers). Replaces the column list.
    #[arg(long = "column", value_name = "NAME=EXPR:TYPE")]
    columns: Vec<String>,
    /// Go back to the source's default mapping.
    #[arg(long, conflicts_with = "columns")]
    clear_columns: bool,
    /// fail, or dead_letter (rejected messages go to `<table>__dlq`).
    #[arg(long)]
    error_policy: Option<String>,
    /// How often to commit, e.g. 500ms, 1s.
    #[arg(long)]
    commit_interval: Option<String>,
    /// Run on this SYNC vcluster.
    #[arg(long)]
    vcluster: Option<String>,
    /// Kafka: how message values are encoded: json, avro, protobuf, debezium-json,
    /// debezium-avro (avro/protobuf need schema.registry.url on the data source).
    #[arg(long, value_name = "FORMAT")]
    message_format: Option<String>,
    /// Kafka change events: a key column rows are applied by, repeatable (default: the
    /// message key's fields).
    #[arg(long = "key-column", value_name = "COLUMN")]
    key_columns: Vec<String>,
    /// Kafka registry formats: a field that lands as JSON text instead of a struct, list or
    /// map, repeatable; `*` for every nested field.
    #[arg(long = "json-field", value_name = "FIELD")]
    json_fields: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum RunsCmd {
    /// Runs of a task, newest first.
    List {
        #[arg(long)]
        task: String,
    },
    /// A run and its attempts.
    Detail { run_id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum AttemptsCmd {
    /// The log of an attempt (default: the run's last attempt).
    Log {
        run_id: i64,
        #[arg(long)]
        attempt: Option<i64>,
    },
}

fn to_sync(err: Error) -> SyncError {
    let kind = match err.code {
        Code::Unavailable => ErrorKind::Transient,
        Code::Internal => ErrorKind::Internal,
        _ => ErrorKind::Config,
    };
    // One line: causes from parsers (JSONPath) can span several.
    let line = err.message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    SyncError::new(kind, line)
}

/// One API call; non-2xx answers become the daemon's error message.
async fn call<T: DeserializeOwned>(
    c: &ClientArgs,
    method: &str,
    path: &[&str],
    query: &[(&str, String)],
    body: Option<&impl Serialize>,
) -> Result<(T, Vec<u8>), Error> {
    let body =
        body.map(serde_json::to_vec).transpose().map_err(|e| Error::internal(format!("encoding the request: {e}")))?;
    let (status, bytes) = client::call(&c.server, c.token.as_deref(), method, path, query, body).await?;
    if !(200..300).contains(&status) {
        return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => b.error,
            Err(_) => Error::new(
                Code::from_http_status(status),
                format!("the daemon answered {status}: {}", String::from_utf8_lossy(&bytes).trim()),
            ),
        });
    }
    let text: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
    let value =
        serde_json::from_slice(text).map_err(|e| Error::internal(format!("unexpected answer from the daemon: {e}")))?;
    Ok((value, bytes))
}

const NO_BODY: Option<&()> = None;

/// Prints the answer: the API's JSON, or the table view.
fn show<T>(c: &ClientArgs, (value, raw): (T, Vec<u8>), table: impl FnOnce(&T)) {
    match c.format {
        Format::Json => println!("{}", String::from_utf8_lossy(&raw).trim_end()),
        Format::Table => table(&value),
    }
}

fn confirm(yes: bool, question: &str) -> Result<(), Error> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::bad_request(format!("{question} — add -y to confirm (stdin is not a terminal)")));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim(), "y" | "Y" | "yes") { Ok(()) } else { Err(Error::bad_request("cancelled")) }
}

fn parse_sets(sets: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for s in sets {
        let (k, v) = s.split_once('=').ok_or_else(|| Error::bad_request(format!("--set {s:?}: expected KEY=VALUE")))?;
        if out.insert(k.trim().to_string(), v.to_string()).is_some() {
            return Err(Error::bad_request(format!("--set {k}: given twice")));
        }
    }
    Ok(out)
}

/// Runs one daemon command.
pub async fn run(cmd: DaemonCommand) -> SyncResult<()> {
    let result = match cmd {
        DaemonCommand::Serve {
            data_dir,
            catalog,
            lakehouse_root,
            metrics_listen,
            vcluster,
            worker_id,
            advertise,
            lease_ttl,
            listen,
            token_file,
            insecure_no_auth,
            allowed_hosts,
            allowed_origins,
            secret_key_file,
            secrets_dir,
            secret_env_prefix,
        } => {
            let make = || {
                let key = SecretKey::from_env_or_file(secret_key_file.as_deref())?;
                Secrets::new(key, Some(secret_env_prefix), secrets_dir.as_deref())
            };
            match make() {
                Ok(secrets) => {
                    let opts = rtsync_control::daemon::ServeOptions {
                        data_dir,
                        catalog,
                        lakehouse_root,
                        metrics_listen,
                        vcluster,
                        worker_id,
                        advertise,
                        lease_ttl,
                        listen,
                        token: None,
                        insecure_no_auth,
                        allowed_hosts,
                        allowed_origins,
                        secrets,
                    };
                    serve(opts, token_file).await
                }
                Err(e) => Err(e),
            }
        }
        DaemonCommand::Secrets { cmd } => secrets(cmd).await,
        DaemonCommand::Mcp { server, token } => crate::mcp::serve(server, token)
            .await
            .map_err(|e| Error::internal(format!("the MCP server's stdio failed: {e}"))),
        DaemonCommand::Datasource { client, cmd } => datasource(&client, cmd).await,
        DaemonCommand::Workers { client, cmd } => workers(&client, cmd).await,
        DaemonCommand::Vcluster { client, cmd } => vcluster(&client, cmd).await,
        DaemonCommand::Folder { client, cmd } => folder(&client, cmd).await,
        DaemonCommand::Alert { client, cmd } => alert(&client, cmd).await,
        DaemonCommand::Meta { client, cmd } => meta(&client, cmd).await,
        DaemonCommand::Table { client, cmd } => table_cmd(&client, cmd).await,
        DaemonCommand::Task { client, cmd } => task(&client, cmd).await,
        DaemonCommand::Runs { client, cmd } => runs(&client, cmd).await,
        DaemonCommand::Attempts { client, cmd } => attempts(&client, cmd).await,
    };
    result.map_err(to_sync)
}

async fn serve(mut opts: rtsync_control::daemon::ServeOptions, token_file: Option<PathBuf>) -> Result<(), Error> {
    opts.token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .map_err(|e| Error::bad_request(format!("--token-file {}: {e}", path.display())))?,
        ),
        None => std::env::var("RTSYNC_TOKEN").ok(),
    };
    let rx = crate::signals::shutdown_on_signals(
        "stopping: every task commits what it holds (signal again to exit at once)",
    );
    rtsync_control::daemon::serve(opts, rx).await
}

async fn secrets(cmd: SecretsCmd) -> Result<(), Error> {
    match cmd {
        SecretsCmd::Keygen => println!("{}", SecretKey::generate()?),
        SecretsCmd::Rotate { data_dir, catalog, secret_key_file, new_key_file, to_plaintext } => {
            let old = SecretKey::from_env_or_file(secret_key_file.as_deref())?;
            let new = match (&new_key_file, to_plaintext) {
                (_, true) => None,
                (Some(path), false) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| Error::bad_request(format!("--new-key-file {}: {e}", path.display())))?;
                    Some(SecretKey::parse(&text, &format!("--new-key-file {}", path.display()))?)
                }
                (None, false) => match std::env::var(NEW_KEY_ENV) {
                    Ok(text) if !text.trim().is_empty() => Some(SecretKey::parse(&text, NEW_KEY_ENV)?),
                    _ => {
                        return Err(Error::bad_request(format!(
                            "secrets rotate needs the new key: set {NEW_KEY_ENV} or pass --new-key-file FILE (or --to-plaintext)"
                        )));
                    }
                },
            };
            let n = rtsync_control::daemon::rotate_secrets(&data_dir, catalog.as_deref(), old, new.as_ref()).await?;
            match new {
                Some(_) => println!(
                    "{n} secret value(s) re-encrypted under the new key; start the daemon with it (RTSYNC_SECRET_KEY or --secret-key-file)"
                ),
                None => println!("{n} secret value(s) decrypted: the catalog holds them in plaintext now"),
            }
        }
    }
    Ok(())
}

async fn datasource(c: &ClientArgs, cmd: DatasourceCmd) -> Result<(), Error> {
    match cmd {
        DatasourceCmd::Create { name, ds_type, set } => {
            let mut properties = parse_sets(&set)?;
            // A relative local lakehouse root means relative to where the command runs.
            if (ds_type.eq_ignore_ascii_case("lakehouse") || ds_type == "1")
                && let Some(root) = properties.get_mut("root")
                && !root.contains("://")
                && let Ok(abs) = std::path::absolute(&*root)
            {
                *root = abs.to_string_lossy().to_string();
            }
            let req = CreateDataSource { name, ds_type, properties };
            let (ds, raw): (DataSource, _) = call(c, "POST", &["api", "v1", "datasources"], &[], Some(&req)).await?;
            show(c, (ds, raw), |d| {
                println!("data source {} created ({}, ds_type {})", d.name, d.ds_type, d.ds_type_id);
            });
        }
        DatasourceCmd::List { ds_type } => {
            let q: Vec<(&str, String)> = ds_type.map(|t| ("type", t)).into_iter().collect();
            show(c, call::<Vec<DataSource>>(c, "GET", &["api", "v1", "datasources"], &q, NO_BODY).await?, |l| {
                output::datasources(l)
            });
        }
        DatasourceCmd::Show { name } => {
            show(
                c,
                call::<DataSource>(c, "GET", &["api", "v1", "datasources", &name], &[], NO_BODY).await?,
                output::datasource,
            );
        }
        DatasourceCmd::Test { name, object } => {
            let q: Vec<(&str, String)> = object.map(|o| ("object", o)).into_iter().collect();
            let (r, raw): (TestResult, _) =
                call(c, "POST", &["api", "v1", "datasources", &name, "test"], &q, NO_BODY).await?;
            let ok = r.ok;
            let message = r.message.clone();
            show(c, (r, raw), |r| println!("{}: {}", if r.ok { "ok" } else { "failed" }, r.message));
            if !ok {
                return Err(Error::bad_request(format!("data source {name} test failed: {message}")));
            }
        }
        DatasourceCmd::Delete { name, yes } => {
            confirm(yes, &format!("delete data source {name}?"))?;
            call::<serde_json::Value>(c, "DELETE", &["api", "v1", "datasources", &name], &[], NO_BODY).await?;
            println!("data source {name} deleted");
        }
    }
    Ok(())
}

async fn workers(c: &ClientArgs, cmd: WorkersCmd) -> Result<(), Error> {
    match cmd {
        WorkersCmd::List => {
            show(c, call::<Vec<Worker>>(c, "GET", &["api", "v1", "workers"], &[], NO_BODY).await?, |l| {
                output::workers(l)
            })
        }
    }
    Ok(())
}

/// `--lease-ttl 20s`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    rtsync_control::duration::parse(text).map_err(|e| e.to_string())
}

async fn vcluster(c: &ClientArgs, cmd: VclusterCmd) -> Result<(), Error> {
    match cmd {
        VclusterCmd::List => {
            show(c, call::<Vec<VCluster>>(c, "GET", &["api", "v1", "vclusters"], &[], NO_BODY).await?, |l| {
                output::vclusters(l)
            })
        }
        VclusterCmd::Create { name, vcluster_type, slots } => {
            let req = CreateVCluster { name, vcluster_type, slots };
            show(c, call::<VCluster>(c, "POST", &["api", "v1", "vclusters"], &[], Some(&req)).await?, |v| {
                println!("vcluster {} created ({}, {} slots)", v.name, v.vcluster_type, v.slots)
            });
        }
        VclusterCmd::Show { name } => {
            show(c, call::<VCluster>(c, "GET", &["api", "v1", "vclusters", &name], &[], NO_BODY).await?, |v| {
                output::vclusters(std::slice::from_ref(v))
            })
        }
        VclusterCmd::Delete { name, yes } => {
            confirm(yes, &format!("delete vcluster {name}?"))?;
            call::<serde_json::Value>(c, "DELETE", &["api", "v1", "vclusters", &name], &[], NO_BODY).await?;
            println!("vcluster {name} deleted");
        }
    }
    Ok(())
}

async fn alert(c: &ClientArgs, cmd: AlertCmd) -> Result<(), Error> {
    use rtsync_control::alerts::{AlertDetail, AlertEvent, AlertRule, AlertTestResult, CreateAlert};
    match cmd {
        AlertCmd::List => {
            show(c, call::<Vec<AlertRule>>(c, "GET", &["api", "v1", "alerts"], &[], NO_BODY).await?, |l| {
                output::alert_rules(l)
            })
        }
        AlertCmd::Events { all } => {
            let q: Vec<(&str, String)> = if all { vec![] } else { vec![("state", "firing".to_string())] };
            show(c, call::<Vec<AlertEvent>>(c, "GET", &["api", "v1", "alert-events"], &q, NO_BODY).await?, |l| {
                output::alert_events(l)
            })
        }
        AlertCmd::Create { name, task, folder, vcluster, when, grace, webhook, secret } => {
            let req = CreateAlert { name, task, folder, vcluster, when, r#for: grace, webhook, secret };
            show(c, call::<AlertRule>(c, "POST", &["api", "v1", "alerts"], &[], Some(&req)).await?, |r| {
                println!(
                    "alert rule {} created: {} {} when {}{}",
                    r.name,
                    r.scope_kind,
                    r.scope,
                    r.condition,
                    if r.for_secs > 0 { format!(" for {}s", r.for_secs) } else { String::new() }
                )
            })
        }
        AlertCmd::Show { name } => {
            show(c, call::<AlertDetail>(c, "GET", &["api", "v1", "alerts", &name], &[], NO_BODY).await?, |d| {
                output::alert_rules(std::slice::from_ref(&d.rule));
                println!();
                output::alert_events(&d.events);
            })
        }
        AlertCmd::Delete { name, yes } => {
            confirm(yes, &format!("delete alert rule {name}?"))?;
            call::<serde_json::Value>(c, "DELETE", &["api", "v1", "alerts", &name], &[], NO_BODY).await?;
            println!("alert rule {name} deleted");
        }
        AlertCmd::Test { name } => show(
            c,
            call::<AlertTestResult>(
                c,
                "POST",
                &["api", "v1", "alerts", &name, "test"],
                &[],
                Some(&serde_json::json!({})),
            )
            .await?,
            |r| println!("alert rule {}: test notification sent; {}", r.rule, r.message),
        ),
    }
    Ok(())
}

async fn folder(c: &ClientArgs, cmd: FolderCmd) -> Result<(), Error> {
    match cmd {
        FolderCmd::List => {
            show(c, call::<Vec<Folder>>(c, "GET", &["api", "v1", "folders"], &[], NO_BODY).await?, |l| {
                output::folders(l)
            })
        }
        FolderCmd::Create { name } => show(
            c,
            call::<Folder>(c, "POST", &["api", "v1", "folders"], &[], Some(&CreateFolder { name })).await?,
            |f| println!("folder {} created", f.name),
        ),
        FolderCmd::Delete { name, yes } => {
            confirm(yes, &format!("delete folder {name}?"))?;
            call::<serde_json::Value>(c, "DELETE", &["api", "v1", "folders", &name], &[], NO_BODY).await?;
            println!("folder {name} deleted");
        }
    }
    Ok(())
}

async fn meta(c: &ClientArgs, cmd: MetaCmd) -> Result<(), Error> {
    match cmd {
        MetaCmd::Namespaces { datasource } => show(
            c,
            call::<Vec<Namespace>>(c, "GET", &["api", "v1", "datasources", &datasource, "namespaces"], &[], NO_BODY)
                .await?,
            |l| output::namespaces(l),
        ),
        MetaCmd::Objects { datasource, namespace } => show(
            c,
            call::<Vec<MetaObject>>(
                c,
                "GET",
                &["api", "v1", "datasources", &datasource, "namespaces", &namespace, "objects"],
                &[],
                NO_BODY,
            )
            .await?,
            |l| output::objects(l),
        ),
        MetaCmd::Detail { datasource, namespace, object, sample } => show(
            c,
            call::<MetaDetail>(
                c,
                "GET",
                &["api", "v1", "datasources", &datasource, "namespaces", &namespace, "objects", &object],
                &[("sample", sample.to_string())],
                NO_BODY,
            )
            .await?,
            output::meta_detail,
        ),
    }
    Ok(())
}

/// `SCHEMA.TABLE`, or `TABLE` in schema `public`.
fn schema_table(text: &str) -> (&str, &str) {
    text.split_once('.').unwrap_or((DEFAULT_SINK_SCHEMA, text))
}

async fn table_cmd(c: &ClientArgs, cmd: TableCmd) -> Result<(), Error> {
    match cmd {
        TableCmd::Info { datasource, table } => {
            let (schema, table) = schema_table(&table);
            show(
                c,
                call::<TableInfo>(
                    c,
                    "GET",
                    &["api", "v1", "datasources", &datasource, "tables", schema, table],
                    &[],
                    NO_BODY,
                )
                .await?,
                output::table_info,
            )
        }
        TableCmd::Optimize { datasource, table } => {
            let (schema, table) = schema_table(&table);
            let path = ["api", "v1", "datasources", &datasource, "tables", schema, table, "optimize"];
            show(c, call::<OptimizeResult>(c, "POST", &path, &[], Some(&serde_json::json!({}))).await?, |r| {
                output::optimize_result(r)
            })
        }
        TableCmd::Upgrade { datasource, table } => {
            let (schema, table) = schema_table(&table);
            let path = ["api", "v1", "datasources", &datasource, "tables", schema, table, "upgrade"];
            show(c, call::<TableInfo>(c, "POST", &path, &[], Some(&serde_json::json!({}))).await?, |t| {
                output::upgrade_result(t)
            })
        }
        TableCmd::Vacuum { datasource, table, dry_run, retention } => {
            let (schema, table) = schema_table(&table);
            let path = ["api", "v1", "datasources", &datasource, "tables", schema, table, "vacuum"];
            let body = VacuumRequest { dry_run, retention };
            show(c, call::<VacuumResult>(c, "POST", &path, &[], Some(&body)).await?, output::vacuum_result)
        }
    }
    Ok(())
}

fn action(c: &ClientArgs, answer: (ActionResult, Vec<u8>)) {
    show(c, answer, |a| println!("{}", a.message));
}

async fn task(c: &ClientArgs, cmd: TaskCmd) -> Result<(), Error> {
    match cmd {
        TaskCmd::Create { name, task_type, folder, vcluster } => {
            let req = CreateTask { name, task_type, folder, vcluster };
            show(c, call::<Task>(c, "POST", &["api", "v1", "tasks"], &[], Some(&req)).await?, |t| {
                println!(
                    "task {} created (task_type {}, folder {}, vcluster {}): configure it with `rtsync task configure {} --source DS --source-table T`",
                    t.name, t.task_type, t.folder, t.vcluster, t.name
                )
            });
        }
        TaskCmd::Configure(args) => {
            let a = *args;
            let columns = if a.columns.is_empty() {
                None
            } else {
                Some(a.columns.iter().map(|s| parse_column_arg(s)).collect::<Result<Vec<_>, _>>()?)
            };
            let error_policy = a
                .error_policy
                .map(|p| p.parse::<ErrorPolicy>().map_err(|e| Error::bad_request(format!("--error-policy: {e}"))))
                .transpose()?;
            let commit_interval_ms = a
                .commit_interval
                .map(|t| {
                    rtsync_control::duration::parse(&t)
                        .map(|d| d.as_millis() as u64)
                        .map_err(|e| Error::bad_request(format!("--commit-interval: {e}")))
                })
                .transpose()?;
            let patch = ConfigPatch {
                source: a.source,
                source_schema: a.source_schema,
                source_table: a.source_table,
                sink: a.sink,
                sink_schema: a.sink_schema,
                sink_table: a.sink_table,
                start_offset: a.start_offset,
                columns,
                clear_columns: a.clear_columns,
                error_policy,
                commit_interval_ms,
                vcluster: a.vcluster,
                format: a.message_format,
                key_columns: (!a.key_columns.is_empty()).then_some(a.key_columns),
                json_fields: (!a.json_fields.is_empty()).then_some(a.json_fields),
            };
            show(
                c,
                call::<Task>(c, "PATCH", &["api", "v1", "tasks", &a.name, "config"], &[], Some(&patch)).await?,
                |t| {
                    println!("task {} configured (draft):", t.name);
                    output::task(t);
                },
            );
        }
        TaskCmd::Preview { name, limit } => show(
            c,
            call::<Preview>(
                c,
                "POST",
                &["api", "v1", "tasks", &name, "preview"],
                &[("limit", limit.to_string())],
                NO_BODY,
            )
            .await?,
            output::preview,
        ),
        TaskCmd::Verify { name } => {
            let (report, raw) = call::<rtsync_control::verify::VerifyReport>(
                c,
                "POST",
                &["api", "v1", "tasks", &name, "verify"],
                &[],
                NO_BODY,
            )
            .await?;
            let (equal, total) = (report.equal, report.differences_total);
            show(c, (report, raw), output::verify);
            if !equal {
                return Err(Error::new(
                    Code::Conflict,
                    format!("task {name}: {total} difference(s) between the source and the target persist"),
                ));
            }
        }
        TaskCmd::Deploy { name, yes } => {
            confirm(yes, &format!("deploy task {name}: publish its draft and start it now?"))?;
            action(c, call(c, "POST", &["api", "v1", "tasks", &name, "deploy"], &[], NO_BODY).await?);
        }
        TaskCmd::Stop { name } => {
            action(c, call(c, "POST", &["api", "v1", "tasks", &name, "stop"], &[], NO_BODY).await?)
        }
        TaskCmd::Start { name } => {
            action(c, call(c, "POST", &["api", "v1", "tasks", &name, "start"], &[], NO_BODY).await?)
        }
        TaskCmd::Undeploy { name, yes } => {
            confirm(yes, &format!("undeploy task {name}: stop it and forget its position?"))?;
            action(c, call(c, "POST", &["api", "v1", "tasks", &name, "undeploy"], &[], NO_BODY).await?);
        }
        TaskCmd::Show { name } => show(
            c,
            call::<TaskDetail>(c, "GET", &["api", "v1", "tasks", &name], &[], NO_BODY).await?,
            output::task_detail,
        ),
        TaskCmd::List { folder } => {
            let q: Vec<(&str, String)> = folder.map(|f| ("folder", f)).into_iter().collect();
            show(c, call::<Vec<Task>>(c, "GET", &["api", "v1", "tasks"], &q, NO_BODY).await?, |l| output::tasks(l));
        }
        TaskCmd::Versions { name } => show(
            c,
            call::<Vec<Version>>(c, "GET", &["api", "v1", "tasks", &name, "versions"], &[], NO_BODY).await?,
            |l| output::versions(l),
        ),
        TaskCmd::Delete { name, yes } => {
            confirm(yes, &format!("delete task {name} with its versions, runs and logs?"))?;
            call::<serde_json::Value>(c, "DELETE", &["api", "v1", "tasks", &name], &[], NO_BODY).await?;
            println!("task {name} deleted");
        }
    }
    Ok(())
}

async fn runs(c: &ClientArgs, cmd: RunsCmd) -> Result<(), Error> {
    match cmd {
        RunsCmd::List { task } => {
            show(c, call::<Vec<Run>>(c, "GET", &["api", "v1", "tasks", &task, "runs"], &[], NO_BODY).await?, |l| {
                output::runs(l)
            })
        }
        RunsCmd::Detail { run_id } => show(
            c,
            call::<RunDetail>(c, "GET", &["api", "v1", "runs", &run_id.to_string()], &[], NO_BODY).await?,
            output::run_detail,
        ),
    }
    Ok(())
}

async fn attempts(c: &ClientArgs, cmd: AttemptsCmd) -> Result<(), Error> {
    match cmd {
        AttemptsCmd::Log { run_id, attempt } => {
            let q: Vec<(&str, String)> = attempt.map(|a| ("attempt", a.to_string())).into_iter().collect();
            show(
                c,
                call::<AttemptLog>(c, "GET", &["api", "v1", "runs", &run_id.to_string(), "log"], &q, NO_BODY).await?,
                output::attempt_log,
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::client_flags_anywhere;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn client_flags_may_come_before_the_command() {
        assert_eq!(
            client_flags_anywhere(args("rtsync --server http://h:1 --format=json task list")),
            args("rtsync task --server http://h:1 --format=json list")
        );
        assert_eq!(client_flags_anywhere(args("rtsync --token t task list")), args("rtsync task --token t list"));
        for unchanged in ["rtsync task list --server http://h:1", "rtsync run spec.toml", "rtsync --version"] {
            assert_eq!(client_flags_anywhere(args(unchanged)), args(unchanged));
        }
    }
}
