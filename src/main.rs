//! The `rtsync` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use rtsync::demo::{DemoOptions, print_report, run_demo};
use rtsync::{RunOptions, TaskSpec, run_task};
use rtsync_core::{SyncError, SyncResult};
use rtsync_engine::TaskMetrics;

#[derive(Parser)]
#[command(
    name = "rtsync",
    version,
    about = "Real-time sync of one Kafka topic or table into one Delta Lake table, exactly-once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one task in the foreground from a spec file (TOML, or JSON by extension).
    Run {
        spec: PathBuf,
        /// Check the spec and exit without running.
        #[arg(long)]
        check: bool,
        /// Progress line on stderr: auto (when a terminal), always, never.
        #[arg(long, default_value = "auto")]
        progress: String,
    },
    /// Sync sample JSON orders through an in-process Kafka into ./lakehouse and show them.
    Demo {
        /// Where the demo's Delta tables go.
        #[arg(long, default_value = "./lakehouse")]
        root: String,
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        /// Seconds over which the sample messages are produced.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
    },
    /// The daemon (`serve`) and its client commands.
    #[command(flatten)]
    Daemon(rtsync::cli::DaemonCommand),
}

/// rtsync's own events at info; the delta kernel and DataFusion log every snapshot at info,
/// which buries them, so those start at warn. `RTSYNC_LOG` replaces the whole filter.

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RTSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(rtsync_control::logs::DEFAULT_FILTER));
    // The attempt-log layer routes a daemon task's events to its attempt's log (a no-op
    // outside `rtsync serve`).
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(rtsync::progress::LogWriter).with_filter(filter))
        .with(rtsync_control::logs::layer())
        .init();
}

async fn cmd_run(spec: PathBuf, check: bool, progress: &str) -> SyncResult<()> {
    let spec = TaskSpec::load(&spec)?;
    if check {
        println!("spec ok: task {:?} → {}", spec.name, spec.sink.table_location());
        return Ok(());
    }
    let metrics = Arc::new(TaskMetrics::default());
    let show = match progress {
        "always" => true,
        "never" => false,
        _ => std::io::stderr().is_terminal(),
    };
    let display = show.then(|| rtsync::progress::spawn(metrics.clone()));
    let shutdown =
        rtsync::signals::shutdown_on_signals("stopping: committing what is buffered (signal again to exit at once)");
    let result = run_task(&spec, RunOptions { metrics: metrics.clone(), shutdown, retry: true }).await;
    if let Some(d) = display {
        d.abort();
        rtsync::progress::finish();
    }
    let s = metrics.snapshot();
    tracing::info!(task = %spec.name, rows = s.rows_out, commits = s.commits, position = %s.position, "task ended");
    result
}

async fn cmd_demo(root: String, messages: u64, seconds: u64) -> SyncResult<()> {
    if messages == 0 {
        return Err(SyncError::config("--messages must be at least 1"));
    }
    eprintln!(
        "rtsync demo: producing {messages} JSON orders into an in-process Kafka topic and syncing them to {root}/public/demo_orders"
    );
    let report =
        run_demo(DemoOptions { root: root.clone(), messages, produce_over: Duration::from_secs(seconds) }).await?;
    print_report(&report, &root).await?;
    if report.rows_in_table + report.dead_lettered != report.produced {
        return Err(SyncError::internal(format!(
            "{} messages produced but {} rows and {} dead letters landed",
            report.produced, report.rows_in_table, report.dead_lettered
        )));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse_from(rtsync::cli::client_flags_anywhere(std::env::args().collect()));
    let result = match cli.command {
        Command::Run { spec, check, progress } => cmd_run(spec, check, &progress).await,
        Command::Demo { root, messages, seconds } => cmd_demo(root, messages, seconds).await,
        Command::Daemon(cmd) => rtsync::cli::run(cmd).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", err.report());
            ExitCode::FAILURE
        }
    }
}
