//! `rtsync serve`: opens the catalog in the data directory, seeds it on the first start,
//! resumes every deployed task from its table's checkpoint, serves the HTTP API, and on
//! shutdown lets every task commit what it holds.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::Api;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::logs;
use crate::scheduler::Scheduler;
use crate::service::Control;

pub const DEFAULT_DATA_DIR: &str = "./rtsync-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const LOCK_FILE: &str = "daemon.lock";
/// Where the default Lakehouse data source points, under the data directory.
pub const LAKEHOUSE_DIR: &str = "lakehouse";

pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: String,
    /// Required as `Authorization: Bearer …` on every API request when set.
    pub token: Option<String>,
    /// Serve a non-loopback address without a token anyway.
    pub insecure_no_auth: bool,
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
    let lock =
        File::create(data_dir.join(LOCK_FILE)).map_err(|e| Error::internal(format!("creating the lock file: {e}")))?;
    lock.try_lock().map_err(|_| {
        Error::conflict(format!("another rtsync daemon is using the data directory {}", data_dir.display()))
    })?;

    let (catalog, created) = Catalog::open(&data_dir)?;
    logs::start_writer(catalog.path())?;
    let scheduler = Scheduler::new(catalog.clone());
    let control = Arc::new(Control::new(catalog, scheduler));
    let lakehouse = data_dir.join(LAKEHOUSE_DIR);
    std::fs::create_dir_all(&lakehouse)
        .map_err(|e| Error::internal(format!("creating {}: {e}", lakehouse.display())))?;
    control.seed(&lakehouse.to_string_lossy())?;
    if created {
        tracing::info!(data_dir = %data_dir.display(), "new catalog: created vcluster 'default' (SYNC), folder 'default' and data source 'lakehouse'");
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
    let listener = TcpListener::bind(&opts.listen)
        .await
        .map_err(|e| Error::bad_request(format!("cannot listen on {}: {e}", opts.listen)))?;
    let addr = listener.local_addr().map_err(|e| Error::internal(format!("reading the listen address: {e}")))?;
    let resumed = control.resume_all().await?;
    tracing::info!(addr = %addr, data_dir = %data_dir.display(), resumed, auth = token.is_some(), "rtsync daemon listening on http://{addr}");

    let http =
        tokio::spawn(crate::http::serve(listener, Arc::new(Api { control: control.clone(), token }), shutdown.clone()));
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    tracing::info!("shutting down: every running task commits what it holds");
    control.scheduler.shutdown().await;
    http.abort();
    drop(lock);
    tracing::info!("daemon stopped");
    Ok(())
}
