//! Shutdown on SIGINT/SIGTERM, shared by `run` and `serve`.

use tokio::sync::watch;

/// First SIGINT/SIGTERM: log `stopping` and flip the returned flag (commit and stop). A second
/// one: exit at once with status 130.
pub fn shutdown_on_signals(stopping: &'static str) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, "cannot listen for SIGTERM");
                return;
            }
        };
        for round in 0..2 {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if round == 0 {
                tracing::info!("{stopping}");
                let _ = tx.send(true);
            } else {
                std::process::exit(130);
            }
        }
    });
    rx
}
