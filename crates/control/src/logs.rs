//! Attempt logs: every tracing event of a running attempt lands in the catalog under its run
//! and attempt number, so `attempts log RUN_ID` shows what the task did and why it failed.
//!
//! **Routing.** The scheduler runs each attempt inside a span named [`ATTEMPT_SPAN`] that
//! carries `run` and `attempt` fields; [`layer`] records them on the span and routes every
//! event under it. Events emitted outside the span (a connector's own thread) are routed by
//! their `task` field, which the engine and the connectors set to the task's application id,
//! through the table [`register`] fills.
//!
//! **Writing.** The layer never blocks the task: it formats the event and hands it to a
//! bounded channel; one writer thread appends batches in a transaction through its own
//! catalog connection. When the channel is full, lines are counted and a notice says how
//! many were dropped. Each attempt keeps at most [`MAX_LINES_PER_ATTEMPT`] lines.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::catalog;
use crate::model::LogLine;

/// The span the scheduler wraps each attempt in; its `run` and `attempt` fields route events.
pub const ATTEMPT_SPAN: &str = "rtsync_attempt";
pub const MAX_LINES_PER_ATTEMPT: u64 = 20_000;
const CHANNEL_DEPTH: usize = 8_192;
const BATCH: usize = 512;

/// Where one attempt's lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    pub run_id: i64,
    pub attempt: i64,
}

struct Record {
    route: Route,
    line: LogLine,
}

struct Router {
    active: AtomicBool,
    by_task: RwLock<HashMap<String, Route>>,
    tx: Mutex<Option<SyncSender<Record>>>,
    dropped: AtomicU64,
}

fn router() -> &'static Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER.get_or_init(|| Router {
        active: AtomicBool::new(false),
        by_task: RwLock::new(HashMap::new()),
        tx: Mutex::new(None),
        dropped: AtomicU64::new(0),
    })
}

/// Log directives for rtsync's own INFO and the libraries' warnings, without the libraries'
/// noise on a healthy path: delta-kernel's ERROR event for the "no files in log segment" it
/// returns (and deltalake handles) when a table does not exist yet, and deltalake's WARN on
/// every commit that it keeps no statistics for a binary column. Errors that matter reach
/// rtsync as results and are logged by it.
pub const DEFAULT_FILTER: &str = "info,buoyant_kernel=warn,buoyant_kernel::snapshot=off,delta_kernel=warn,deltalake_core=warn,deltalake_core::writer::stats=error,datafusion=warn,object_store=warn";

/// The layer to install in the process's subscriber (a no-op until [`start_writer`]).
/// It sees [`DEFAULT_FILTER`], whatever the console filter says.
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    AttemptLogLayer.with_filter(tracing_subscriber::EnvFilter::new(DEFAULT_FILTER))
}

/// Starts the writer thread appending to `catalog` (a handle with connections of its own, see
/// [`catalog::Catalog::separate`]). Called once by the daemon.
pub fn start_writer(catalog: catalog::Catalog) -> crate::error::Result<()> {
    let (tx, rx) = sync_channel(CHANNEL_DEPTH);
    // The thread drives its catalog calls on a runtime of its own: the tasks' runtime never
    // waits on a log write.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::error::Error::internal(format!("starting the log writer's runtime: {e}")))?;
    std::thread::Builder::new()
        .name("rtsync-attempt-logs".into())
        .spawn(move || write_loop(&runtime, &catalog, rx))
        .map_err(|e| crate::error::Error::internal(format!("starting the log writer thread: {e}")))?;
    let r = router();
    if let Ok(mut slot) = r.tx.lock() {
        *slot = Some(tx);
    }
    r.active.store(true, Ordering::SeqCst);
    Ok(())
}

/// Routes events whose `task` field is `app_id` to `route` (events outside the attempt span).
pub fn register(app_id: &str, route: Route) {
    if let Ok(mut map) = router().by_task.write() {
        map.insert(app_id.to_string(), route);
    }
}

pub fn unregister(app_id: &str, route: Route) {
    if let Ok(mut map) = router().by_task.write()
        && map.get(app_id) == Some(&route)
    {
        map.remove(app_id);
    }
}

/// Writes a line to an attempt's log directly (lifecycle notes outside any span).
pub fn note(route: Route, level: Level, message: impl Into<String>) {
    send(Record { route, line: LogLine { ts: catalog::now(), level: level.to_string(), message: message.into() } });
}

fn send(record: Record) {
    let r = router();
    let Ok(guard) = r.tx.lock() else { return };
    let Some(tx) = guard.as_ref() else { return };
    match tx.try_send(record) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            r.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn write_loop(runtime: &tokio::runtime::Runtime, catalog: &catalog::Catalog, rx: Receiver<Record>) {
    let mut counts: HashMap<Route, u64> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let dropped = router().dropped.swap(0, Ordering::Relaxed);
        let mut lines = Vec::with_capacity(batch.len() + 1);
        if dropped > 0
            && let Some(first) = batch.first()
        {
            let line = LogLine {
                ts: catalog::now(),
                level: "WARN".into(),
                message: format!("{dropped} log lines were dropped: the log writer fell behind"),
            };
            lines.push((first.route.run_id, first.route.attempt, line));
        }
        for r in batch {
            let n = counts.entry(r.route).or_insert(0);
            *n += 1;
            if *n == MAX_LINES_PER_ATTEMPT + 1 {
                let line = LogLine {
                    ts: r.line.ts,
                    level: "WARN".into(),
                    message: format!("log truncated: an attempt keeps at most {MAX_LINES_PER_ATTEMPT} lines"),
                };
                lines.push((r.route.run_id, r.route.attempt, line));
            } else if *n <= MAX_LINES_PER_ATTEMPT {
                lines.push((r.route.run_id, r.route.attempt, r.line));
            }
        }
        if let Err(err) = runtime.block_on(catalog.append_log_lines(&lines)) {
            // Not through tracing: that would feed the error back into this writer.
            eprintln!("rtsync: writing attempt logs failed: {err}");
        }
    }
}

struct AttemptLogLayer;

/// Collects `run`/`attempt` from the attempt span.
#[derive(Default)]
struct RouteVisitor {
    run: Option<i64>,
    attempt: Option<i64>,
}

impl Visit for RouteVisitor {
    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            "run" => self.run = Some(value),
            "attempt" => self.attempt = Some(value),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_i64(field, value as i64);
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}

/// Formats an event as `message key=value …`, remembering its `task` field.
#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
    task: Option<String>,
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message.push_str(value),
            "task" => self.task = Some(value.to_string()),
            name => {
                let _ = write!(self.fields, " {name}={value}");
            }
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => {
                let _ = write!(self.message, "{value:?}");
            }
            "task" => self.task = Some(format!("{value:?}")),
            name => {
                let _ = write!(self.fields, " {name}={value:?}");
            }
        }
    }
}

impl<S> Layer<S> for AttemptLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != ATTEMPT_SPAN {
            return;
        }
        let mut v = RouteVisitor::default();
        attrs.record(&mut v);
        if let (Some(run_id), Some(attempt), Some(span)) = (v.run, v.attempt, ctx.span(id)) {
            span.extensions_mut().insert(Route { run_id, attempt });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let r = router();
        if !r.active.load(Ordering::Relaxed) {
            return;
        }
        let mut route = ctx
            .event_scope(event)
            .and_then(|scope| scope.from_root().find_map(|span| span.extensions().get::<Route>().copied()));
        let mut v = LineVisitor::default();
        event.record(&mut v);
        if route.is_none()
            && let Some(task) = &v.task
            && let Ok(map) = r.by_task.read()
        {
            route = map.get(task.trim_matches('"')).copied();
        }
        let Some(route) = route else { return };
        let mut message = v.message;
        message.push_str(&v.fields);
        send(Record {
            route,
            line: LogLine { ts: catalog::now(), level: event.metadata().level().to_string(), message },
        });
    }
}
