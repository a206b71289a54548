//! `rtsync serve`: opens the catalog (the SQLite file in the data directory, or a shared
//! PostgreSQL database with `--catalog`), seeds it on the first start, resumes every deployed
//! task from its table's checkpoint, serves the HTTP API, and on shutdown lets every task
//! commit what it holds.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::Api;
use crate::catalog::Catalog;
use crate::cluster::{Cluster, WorkerOptions};
use crate::error::{Error, Result};
use crate::guard::Guard;
use crate::logs;
use crate::model::DEFAULT_VCLUSTER;
use crate::scheduler::Scheduler;
use crate::secrets::{KEY_ENV, SecretKey, Secrets};
use crate::service::Control;

pub const DEFAULT_DATA_DIR: &str = "./rtsync-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const LOCK_FILE: &str = "daemon.lock";
/// Where the default Lakehouse data source points, under the data directory.
pub const LAKEHOUSE_DIR: &str = "lakehouse";

pub struct ServeOptions {
    pub data_dir: PathBuf,
    /// A PostgreSQL catalog (`postgres://…`) shared by several workers; None: the SQLite file
    /// in the data directory.
    pub catalog: Option<String>,
    /// The root of the default `lakehouse` data source when the catalog is created; required
    /// with a PostgreSQL catalog (every worker must reach it). None: `<data dir>/lakehouse`.
    pub lakehouse_root: Option<String>,
    /// Serves `/metrics` (and `/health`) on this address too, without the token.
    pub metrics_listen: Option<String>,
    /// With a shared catalog: the vcluster whose tasks this worker runs (default `default`).
    pub vcluster: Option<String>,
    /// With a shared catalog: this worker's id (default `<host name>-<pid>`).
    pub worker_id: Option<String>,
    /// The API address other workers and `workers list` show (default `http://<listen>`).
    pub advertise: Option<String>,
    /// With a shared catalog: how long a task lease lasts without a renewal.
    pub lease_ttl: Duration,
    pub listen: String,
    /// Required as `Authorization: Bearer …` on every API request when set.
    pub token: Option<String>,
    /// Serve a non-loopback address without a token anyway.
    pub insecure_no_auth: bool,
    /// Host names the API answers to besides `localhost`, loopback and the listen address
    /// (`--allowed-host`, repeatable; `*` for any).
    pub allowed_hosts: Vec<String>,
    /// Web origins allowed to call the API from their pages (CORS; `--allowed-origin`).
    pub allowed_origins: Vec<String>,
    /// The secrets key and the rules for secret references.
    pub secrets: Secrets,
}

/// Takes the data directory's lock: one process at a time works on a catalog.
fn lock_data_dir(data_dir: &Path) -> Result<File> {
    let lock =
        File::create(data_dir.join(LOCK_FILE)).map_err(|e| Error::internal(format!("creating the lock file: {e}")))?;
    lock.try_lock().map_err(|_| {
        Error::conflict(format!("another rtsync daemon is using the data directory {}", data_dir.display()))
    })?;
    Ok(lock)
}

/// `rtsync secrets rotate`: re-encrypts every stored secret of the catalog in `data_dir`,
/// opened with `old` (plaintext ones need none), under `new` (`None`: back to plaintext), in
/// one transaction, then rebuilds the file so that no old ciphertext or plaintext stays in it.
/// Refused while a daemon uses the directory. Returns how many values were re-encrypted.
/// With a PostgreSQL catalog (`catalog`), the workers must be stopped by the operator.
pub async fn rotate_secrets(
    data_dir: &Path,
    catalog: Option<&str>,
    old: Option<SecretKey>,
    new: Option<&SecretKey>,
) -> Result<usize> {
    let _lock = match catalog {
        Some(_) => None,
        None => {
            if !data_dir.join(crate::catalog::CATALOG_FILE).exists() {
                return Err(Error::not_found(format!("no catalog in {}: check --data-dir", data_dir.display())));
            }
            Some(lock_data_dir(data_dir).map_err(|e| e.context("stop the daemon first"))?)
        }
    };
    let (catalog, _) = Catalog::open(catalog, data_dir).await?;
    let opener = Secrets::new(old, None, None)?;
    let mut updates = Vec::new();
    let mut values = 0;
    for ds in catalog.datasources().await? {
        let sealed =
            opener.seal_all(&ds.properties, new).map_err(|e| e.context(format!("data source {:?}", ds.name)))?;
        values += sealed.iter().filter(|(k, v)| crate::secrets::is_secret_property(k, v)).count();
        updates.push((ds.id, sealed));
    }
    catalog.update_datasource_properties(&updates).await?;
    catalog.compact().await?;
    Ok(values)
}

/// Runs the daemon until `shutdown` turns true.
pub async fn serve(opts: ServeOptions, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let token = opts.token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
    if let Some(t) = &token
        && t.len() < 16
    {
        return Err(Error::bad_request(format!(
            "the API token is {} characters long: use at least 16 (e.g. `openssl rand -hex 24`)",
            t.len()
        )));
    }
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| Error::internal(format!("creating the data directory {}: {e}", opts.data_dir.display())))?;
    let data_dir = std::path::absolute(&opts.data_dir)
        .map_err(|e| Error::internal(format!("resolving the data directory {}: {e}", opts.data_dir.display())))?;
    // One daemon per data directory: a second one would run the same tasks twice.
    let lock = lock_data_dir(&data_dir)?;

    let lakehouse = match (&opts.catalog, &opts.lakehouse_root) {
        (_, Some(root)) => {
            if !root.contains("://") {
                std::fs::create_dir_all(root).map_err(|e| Error::internal(format!("creating {root}: {e}")))?;
            }
            root.clone()
        }
        (None, None) => {
            let dir = data_dir.join(LAKEHOUSE_DIR);
            std::fs::create_dir_all(&dir).map_err(|e| Error::internal(format!("creating {}: {e}", dir.display())))?;
            dir.to_string_lossy().into_owned()
        }
        (Some(_), None) => {
            return Err(Error::bad_request(
                "with a PostgreSQL catalog the default `lakehouse` data source needs a root every worker reaches: pass --lakehouse-root (s3://bucket/lake, az://…, gs://…, or a directory shared by every worker), or RTSYNC_LAKEHOUSE_ROOT",
            ));
        }
    };
    if opts.catalog.is_none()
        && let Some(v) = &opts.vcluster
    {
        return Err(Error::bad_request(format!(
            "--vcluster {v}: worker pools need a shared catalog (--catalog postgres://…); the single daemon of an SQLite catalog runs the tasks of every vcluster"
        )));
    }
    // Checked before binding: an exposed address without a token is never served, not even briefly.
    if token.is_none() && !opts.insecure_no_auth {
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&opts.listen)
            .await
            .map_err(|e| Error::bad_request(format!("cannot listen on {}: {e}", opts.listen)))?
            .collect();
        if let Some(exposed) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            return Err(Error::bad_request(format!(
                "refusing to serve the API on {exposed} without a token: anyone who reaches it could run tasks; set RTSYNC_TOKEN or --token-file FILE (or pass --insecure-no-auth)"
            )));
        }
    }
    // Bound now, served once the catalog is open and the deployed tasks resumed.
    let listener = TcpListener::bind(&opts.listen)
        .await
        .map_err(|e| Error::bad_request(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener.local_addr().map_err(|e| Error::internal(format!("reading the listen address: {e}")))?;
    let worker = WorkerOptions {
        id: opts.worker_id.clone().unwrap_or_else(WorkerOptions::default_id),
        address: opts.advertise.clone().unwrap_or_else(|| format!("http://{addr}")),
        vcluster: opts.vcluster.clone().unwrap_or_else(|| DEFAULT_VCLUSTER.to_string()),
        ttl: opts.lease_ttl,
    };
    worker.validate()?;

    let (catalog, created) = Catalog::open(opts.catalog.as_deref(), &data_dir).await?;
    logs::start_writer(catalog.separate().await?)?;
    let cluster = match &opts.catalog {
        Some(_) => {
            let cluster = Cluster::new(catalog.separate().await?.db().clone(), worker.clone());
            cluster.register().await?;
            Some(cluster)
        }
        None => None,
    };
    let scheduler = Scheduler::new(catalog.clone(), worker.id.clone(), worker.address.clone());
    let keyed = opts.secrets.key().is_some();
    let mut control = Control::new(catalog, scheduler, opts.secrets, cluster.clone());
    control.key_index_dir = Some(data_dir.join("key-index"));
    let control = Arc::new(control);
    let plaintext = control.seal_stored_secrets().await?;
    if !keyed {
        tracing::warn!(
            plaintext,
            catalog = %control.catalog.location(),
            "secrets are stored in plaintext in the catalog: set {KEY_ENV} (or --secret-key-file FILE) to encrypt them, or reference them from data sources with password_env / password_file (see `rtsync secrets --help`)"
        );
    }
    control.seed(&lakehouse).await?;
    if created {
        tracing::info!(catalog = %control.catalog.location(), lakehouse = %lakehouse, "new catalog: created vcluster 'default' (SYNC), folder 'default' and data source 'lakehouse'");
    }

    let resumed = control.resume_all().await?;
    let keeper = cluster.as_ref().map(|c| tokio::spawn(c.clone().keep(control.clone(), shutdown.clone())));
    tracing::info!(addr = %addr, data_dir = %data_dir.display(), catalog = %control.catalog.location(), worker = %worker.id, resumed, auth = token.is_some(), "rtsync daemon listening on http://{addr}");

    let listen_host = opts.listen.rsplit_once(':').map_or(opts.listen.as_str(), |(h, _)| h);
    let guard = Guard::new(addr, listen_host, &opts.allowed_hosts, &opts.allowed_origins);
    let api = Api { control: control.clone(), token, guard };
    let http = tokio::spawn(crate::http::serve(listener, Arc::new(api), shutdown.clone()));
    let alerts = tokio::spawn(crate::alerts::run(control.clone(), shutdown.clone()));
    let metrics_http = match &opts.metrics_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| Error::bad_request(format!("cannot listen on {addr} (--metrics-listen): {e}")))?;
            tracing::info!(addr = %addr, "metrics on http://{addr}/metrics");
            let handler = Arc::new(crate::api::MetricsOnly { control: control.clone() });
            Some(tokio::spawn(crate::http::serve(listener, handler, shutdown.clone())))
        }
        None => None,
    };
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    tracing::info!("shutting down: every running task commits what it holds");
    match &cluster {
        Some(c) => {
            if let Some(k) = keeper {
                let _ = k.await;
            }
            c.leave(&control).await;
        }
        None => control.scheduler.shutdown().await,
    }
    http.abort();
    alerts.abort();
    if let Some(m) = metrics_http {
        m.abort();
    }
    drop(lock);
    tracing::info!("daemon stopped");
    Ok(())
}
