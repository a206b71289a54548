//! How the daemon's answers are printed: aligned tables for people (`--format table`), the
//! API's JSON for scripts (`--format json`).

use rtsync_control::model::*;

use crate::progress::{snapshot_text, thousands};

/// Prints rows under headers, each column as wide as its widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(c);
                out.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
    if rows.is_empty() {
        println!("(none)");
    }
}

/// Key/value lines: `key    value`.
pub fn fields(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:<w$}  {v}");
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".into())
}

pub fn datasources(list: &[DataSource]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|d| {
            let props = d.properties.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
            vec![d.name.clone(), d.ds_type.to_string(), d.ds_type_id.to_string(), props]
        })
        .collect();
    table(&["NAME", "TYPE", "DS_TYPE", "PROPERTIES"], &rows);
}

pub fn datasource(d: &DataSource) {
    let mut pairs = vec![
        ("name", d.name.clone()),
        ("type", format!("{} (ds_type {})", d.ds_type, d.ds_type_id)),
        ("created", d.created_at.clone()),
    ];
    let props: Vec<String> = d.properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.push(("properties", props.join("\n            ")));
    fields(&pairs);
}

pub fn vclusters(list: &[VCluster]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                v.vcluster_type.clone(),
                v.slots.to_string(),
                v.slots_used.to_string(),
                v.tasks.join(","),
            ]
        })
        .collect();
    table(&["NAME", "VCLUSTER_TYPE", "SLOTS", "USED", "RUNNING_TASKS"], &rows);
}

pub fn workers(list: &[Worker]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.address.clone(),
                w.vcluster.clone(),
                w.state.clone(),
                w.tasks.len().to_string(),
                w.tasks.join(","),
                format!("{} ({:.1}s ago)", w.last_heartbeat, w.heartbeat_age_ms as f64 / 1000.0),
                w.version.clone(),
            ]
        })
        .collect();
    table(&["ID", "ADDRESS", "VCLUSTER", "STATE", "TASKS", "RUNNING", "LAST_HEARTBEAT", "VERSION"], &rows);
}

pub fn alert_rules(list: &[rtsync_control::alerts::AlertRule]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                format!("{} {}", r.scope_kind, r.scope),
                r.condition.clone(),
                if r.for_secs > 0 { format!("{}s", r.for_secs) } else { "-".into() },
                r.webhook.clone().unwrap_or_else(|| "log only".into()),
                r.firing.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "SCOPE", "WHEN", "FOR", "WEBHOOK", "FIRING"], &rows);
}

pub fn alert_events(list: &[rtsync_control::alerts::AlertEvent]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let sent = match (e.fired_sent, e.resolved_at.is_some(), e.resolved_sent) {
                (false, _, _) => "pending",
                (true, true, false) => "resolution pending",
                _ => "sent",
            };
            vec![
                e.rule.clone(),
                e.task.clone(),
                e.state.clone(),
                e.value.chars().take(60).collect(),
                e.fired_at.clone(),
                e.resolved_at.clone().unwrap_or_else(|| "-".into()),
                e.delivery_error.clone().map_or(sent.to_string(), |err| format!("{sent}: {err}")),
            ]
        })
        .collect();
    table(&["RULE", "TASK", "STATE", "VALUE", "FIRED", "RESOLVED", "NOTIFIED"], &rows);
}

pub fn folders(list: &[Folder]) {
    let rows: Vec<Vec<String>> =
        list.iter().map(|f| vec![f.name.clone(), f.tasks.to_string(), f.created_at.clone()]).collect();
    table(&["NAME", "TASKS", "CREATED"], &rows);
}

pub fn namespaces(list: &[Namespace]) {
    let rows: Vec<Vec<String>> =
        list.iter().map(|n| vec![n.name.clone(), n.objects.map_or("-".into(), |o| o.to_string())]).collect();
    table(&["NAMESPACE", "OBJECTS"], &rows);
}

pub fn objects(list: &[MetaObject]) {
    if !list.iter().any(|o| o.kind == "topic") {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|o| {
                vec![
                    o.name.clone(),
                    o.kind.clone(),
                    if o.primary_key.is_empty() { "-".into() } else { o.primary_key.join(", ") },
                    o.estimated_rows.map_or("-".into(), |r| format!("~{}", thousands(r.max(0) as u64))),
                    opt(&o.detail),
                ]
            })
            .collect();
        return table(&["NAME", "KIND", "PRIMARY KEY", "ROWS", "DETAIL"], &rows);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                o.kind.clone(),
                o.partitions.map_or("-".into(), |p| p.to_string()),
                o.messages.map_or("-".into(), |m| m.to_string()),
                opt(&o.detail),
            ]
        })
        .collect();
    table(&["NAME", "KIND", "PARTITIONS", "MESSAGES", "DETAIL"], &rows);
}

pub fn meta_detail(d: &MetaDetail) {
    println!("{} {}.{} ({})", d.datasource, d.namespace, d.object, d.kind);
    if !d.partitions.is_empty() {
        let parts: Vec<String> =
            d.partitions.iter().map(|p| format!("{}:{}..{}", p.partition, p.low, p.high)).collect();
        println!("partitions: {}", parts.join(" "));
    }
    if let Some(n) = &d.note {
        println!("{n}");
    }
    if let (Some(s), Some(nj)) = (d.sampled, d.not_json)
        && nj > 0
    {
        println!("{nj} of {s} sampled values are not JSON");
    }
    if !d.primary_key.is_empty() {
        println!("primary key: {}", d.primary_key.join(", "));
    }
    println!();
    if d.columns.iter().any(|c| c.source_type.is_some()) {
        let rows: Vec<Vec<String>> = d
            .columns
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    opt(&c.source_type),
                    c.ty.clone(),
                    if c.nullable { "yes".into() } else { "no".into() },
                    if d.primary_key.contains(&c.name) { "yes".into() } else { String::new() },
                ]
            })
            .collect();
        return table(&["COLUMN", "SOURCE TYPE", "DELTA TYPE", "NULLABLE", "KEY"], &rows);
    }
    let rows: Vec<Vec<String>> = d
        .columns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.ty.clone(),
                if c.nullable { "yes".into() } else { "no".into() },
                opt(&c.path),
                c.seen.map_or("-".into(), |s| s.to_string()),
                opt(&c.column_arg),
            ]
        })
        .collect();
    table(&["COLUMN", "TYPE", "NULLABLE", "JSONPATH", "SEEN", "--column"], &rows);
    if !d.builtin.is_empty() {
        println!(
            "\nbuilt-in fields (the default mapping): {}",
            d.builtin.iter().map(|c| format!("{} {}", c.name, c.ty)).collect::<Vec<_>>().join(", ")
        );
    }
}

pub fn tasks(list: &[Task]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            let src = match (&t.draft.source, &t.draft.source_table) {
                (Some(s), Some(tb)) => format!("{s}:{tb}"),
                (Some(s), None) => s.clone(),
                _ => "-".into(),
            };
            vec![
                t.name.clone(),
                t.state.to_string(),
                t.deployed_version.map_or("-".into(), |v| v.to_string()),
                t.folder.clone(),
                t.vcluster.clone(),
                src,
                t.last_error.clone().map(|e| truncate(&e, 60)).unwrap_or_default(),
            ]
        })
        .collect();
    table(&["NAME", "STATE", "VERSION", "FOLDER", "VCLUSTER", "SOURCE", "LAST_ERROR"], &rows);
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n).collect::<String>()) }
}

fn describe_config(c: &TaskConfig) -> Vec<(&'static str, String)> {
    let source = match (&c.source, &c.source_table) {
        (Some(s), Some(t)) => format!("{s} {}.{t}", c.source_schema.as_deref().unwrap_or("default")),
        (Some(s), None) => format!("{s} (no table/topic yet)"),
        _ => "not configured".into(),
    };
    let columns = if c.columns.is_empty() {
        "the source's default mapping (Kafka: key, value, timestamp, partition, offset, headers; a table: every column)"
            .to_string()
    } else {
        c.columns.iter().map(|col| format!("{}={}:{}", col.name, col.expr, col.ty)).collect::<Vec<_>>().join(", ")
    };
    vec![
        ("source", source),
        ("start offset", c.start_offset.clone().unwrap_or_else(|| "earliest".into())),
        ("format", c.format.clone().unwrap_or_else(|| "json".into())),
        ("target", format!("{} {}.{}", c.sink, c.sink_schema, c.effective_sink_table().unwrap_or("(source table)"))),
        ("columns", columns),
        ("error policy", format!("{:?}", c.error_policy).to_lowercase().replace("deadletter", "dead_letter")),
    ]
}

pub fn task(t: &Task) {
    let mut pairs = vec![
        ("task", format!("{} (task_type {} REALTIME)", t.name, t.task_type)),
        ("state", t.state.to_string()),
        ("folder", t.folder.clone()),
        ("vcluster", t.vcluster.clone()),
        ("deployed version", t.deployed_version.map_or("-".into(), |v| v.to_string())),
    ];
    for (k, v) in describe_config(&t.draft) {
        pairs.push((k, v));
    }
    fields(&pairs);
}

pub fn task_detail(d: &TaskDetail) {
    let t = &d.task;
    let s = &d.status;
    let mut pairs = vec![
        ("task", format!("{} (task_type {} REALTIME)", t.name, t.task_type)),
        ("status", {
            let mut v = s.phase.clone();
            if let Some(r) = s.run_id {
                v.push_str(&format!(" (run {r}"));
                if let Some(a) = s.attempt {
                    v.push_str(&format!(", attempt {a}"));
                }
                v.push(')');
            }
            v
        }),
        ("folder", t.folder.clone()),
        ("vcluster", t.vcluster.clone()),
        ("worker", opt(&s.worker)),
        (
            "deployed version",
            d.deployed
                .as_ref()
                .map_or("- (not deployed)".into(), |v| format!("{} (published {})", v.version, v.published_at)),
        ),
        ("delta app id", d.app_id.clone()),
    ];
    let cfg = d.deployed.as_ref().map(|v| &v.config).unwrap_or(&t.draft);
    pairs.extend(describe_config(cfg));
    if let Some(target) = &d.target {
        pairs.push(("table", target.clone()));
    }
    if d.deployed.as_ref().is_some_and(|v| v.config != t.draft) {
        pairs.push(("draft", "changed since the deployed version (deploy to publish it)".into()));
    }
    pairs.push((
        "position",
        s.position.clone().map_or("-".into(), |p| {
            if p.is_empty() { "-".into() } else { format!("{p} (epoch {})", s.epoch.unwrap_or(0)) }
        }),
    ));
    if let Some(snap) = &s.snapshot {
        let n = |v: i64| v.max(0) as u64;
        pairs.push((
            "snapshot",
            snapshot_text(n(snap.rows), snap.estimated_rows.map(n), snap.percent.map(n), snap.eta_secs.map(n)),
        ));
    }
    pairs.push(("lag", s.lag.map_or("-".into(), |l| format!("{} message(s)", thousands(l.max(0) as u64)))));
    pairs.push(("rows synced", thousands(s.rows_synced.max(0) as u64)));
    pairs.push(("rows/s", format!("{:.1}", s.rows_per_sec)));
    pairs.push((
        "freshness",
        match (s.freshness_ms, s.freshness_p99_ms) {
            (Some(f), Some(p)) => format!("{:.2}s (p99 {:.2}s)", f as f64 / 1000.0, p as f64 / 1000.0),
            _ => "-".into(),
        },
    ));
    pairs.push(("last commit", opt(&s.last_commit_at)));
    if s.rejected > 0 || s.dead_lettered > 0 {
        pairs.push(("rejected", format!("{} (dead-lettered {})", s.rejected, s.dead_lettered)));
    }
    pairs.push(("last error", opt(&t.last_error)));
    if let Some(w) = &s.warning {
        pairs.push(("warning", w.clone()));
    }
    fields(&pairs);
}

pub fn versions(list: &[Version]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            let src = format!(
                "{}:{}",
                v.config.source.clone().unwrap_or_default(),
                v.config.source_table.clone().unwrap_or_default()
            );
            vec![
                v.version.to_string(),
                v.incarnation.to_string(),
                v.published_at.clone(),
                src,
                v.config.columns.len().to_string(),
            ]
        })
        .collect();
    table(&["VERSION", "INCARNATION", "PUBLISHED", "SOURCE", "COLUMNS"], &rows);
}

pub fn runs(list: &[Run]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.task.clone(),
                r.status.clone(),
                r.version.to_string(),
                r.attempts.to_string(),
                thousands(r.rows_synced.max(0) as u64),
                r.started_at.clone(),
                opt(&r.ended_at),
                r.end_reason.clone().map(|e| truncate(&e, 80)).unwrap_or_default(),
            ]
        })
        .collect();
    table(&["RUN_ID", "TASK", "STATUS", "VERSION", "ATTEMPTS", "ROWS", "STARTED", "ENDED", "REASON"], &rows);
}

pub fn run_detail(d: &RunDetail) {
    let r = &d.run;
    fields(&[
        ("run", r.id.to_string()),
        ("task", r.task.clone()),
        ("status", r.status.clone()),
        ("version", r.version.to_string()),
        ("incarnation", r.incarnation.to_string()),
        ("started", r.started_at.clone()),
        ("ended", opt(&r.ended_at)),
        ("end reason", opt(&r.end_reason)),
        ("rows synced", thousands(r.rows_synced.max(0) as u64)),
    ]);
    println!();
    let rows: Vec<Vec<String>> = d
        .attempts
        .iter()
        .map(|a| {
            vec![
                a.attempt.to_string(),
                a.status.clone(),
                opt(&a.worker),
                a.reason.clone(),
                a.started_at.clone(),
                opt(&a.ended_at),
                match (&a.error_kind, &a.error) {
                    (Some(k), Some(e)) => format!("{k}: {e}"),
                    (None, Some(e)) => e.clone(),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    table(&["ATTEMPT", "STATUS", "WORKER", "REASON", "STARTED", "ENDED", "ERROR"], &rows);
}

pub fn attempt_log(l: &AttemptLog) {
    let a = &l.attempt;
    println!(
        "run {} attempt {}: {} ({}), started {}, ended {}",
        l.run_id,
        a.attempt,
        a.status,
        a.reason,
        a.started_at,
        a.ended_at.clone().unwrap_or_else(|| "-".into())
    );
    if let Some(e) = &a.error {
        println!("error ({}): {e}", a.error_kind.clone().unwrap_or_default());
    }
    println!();
    for line in &l.lines {
        println!("{} {:<5} {}", line.ts, line.level, line.message);
    }
    if l.lines.is_empty() {
        println!("(no log lines)");
    }
}

pub fn preview(p: &Preview) {
    let headers: Vec<String> = p.columns.iter().map(|c| c.name.clone()).collect();
    let rows: Vec<Vec<String>> = p
        .rows
        .iter()
        .map(|r| {
            headers
                .iter()
                .map(|h| match r.get(h) {
                    Some(serde_json::Value::Null) | None => "NULL".to_string(),
                    Some(serde_json::Value::String(s)) => truncate(s, 60),
                    Some(v) => truncate(&v.to_string(), 60),
                })
                .collect()
        })
        .collect();
    let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    table(&header_refs, &rows);
    if let Some(t) = &p.table {
        println!(
            "\n{} row(s) of {t}, the first in key order, as the snapshot reads them (nothing was written)",
            p.rows.len()
        );
    } else {
        println!(
            "\n{} message(s) read, {} mapped, {} rejected (nothing was written)",
            p.messages_read,
            p.rows.len(),
            p.rejected.len()
        );
    }
    for r in &p.rejected {
        println!("rejected at {}: {}", r.at, r.reason);
    }
    if let Some(n) = &p.note {
        println!("{n}");
    }
}

/// `task verify`: the totals, the ranges that disagree, the persisting differences.
pub fn verify(r: &rtsync_control::verify::VerifyReport) {
    println!("task {}: source {} vs target {}", r.task, r.source_table, r.target);
    println!(
        "rows: source {}, target {} (source at {}, target version {} at {})",
        thousands(r.source_rows),
        thousands(r.target_rows),
        r.source_position,
        r.target_version,
        r.target_position.as_deref().unwrap_or("no checkpoint")
    );
    println!(
        "ranges: {} of {} differed at the first comparison ({} rows per range, key {})",
        r.ranges_differing,
        r.ranges.len(),
        thousands(r.rows_per_range),
        r.key_columns.join(", ")
    );
    let differing: Vec<Vec<String>> = r
        .ranges
        .iter()
        .enumerate()
        .filter(|(_, g)| !g.equal)
        .map(|(i, g)| vec![i.to_string(), g.first_key.join(", "), thousands(g.source_rows), thousands(g.target_rows)])
        .collect();
    if !differing.is_empty() && !r.equal {
        println!();
        table(&["RANGE", "FIRST KEY", "SOURCE ROWS", "TARGET ROWS"], &differing);
    }
    if !r.differences.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = r
            .differences
            .iter()
            .map(|d| {
                let kind = serde_json::to_value(d.kind).ok().and_then(|v| v.as_str().map(str::to_string));
                vec![kind.unwrap_or_default(), truncate(&d.key.join(", "), 60), d.columns.join(", ")]
            })
            .collect();
        table(&["DIFFERENCE", "KEY", "COLUMNS"], &rows);
        if r.differences_total > r.differences.len() {
            println!("… and {} more", r.differences_total - r.differences.len());
        }
    }
    for n in &r.not_compared {
        println!("not compared: {} ({})", n.column, n.reason);
    }
    if let Some(note) = &r.note {
        println!("note: {note}");
    }
    println!();
    if r.equal {
        println!(
            "EQUAL: {} row(s) match ({} difference(s) were lag and resolved on re-check; {:.1}s)",
            thousands(r.source_rows),
            r.resolved_on_recheck,
            r.elapsed_ms as f64 / 1000.0
        );
    } else {
        println!(
            "DIFFERENT: {} difference(s) persist after {} re-check(s) ({:.1}s)",
            r.differences_total,
            r.rechecks,
            r.elapsed_ms as f64 / 1000.0
        );
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn table_info(t: &TableInfo) {
    let none = || "-".to_string();
    println!("table             {}", t.location);
    println!("version           {}", t.version);
    println!("active files      {}", t.active_files);
    println!("size              {}", mib(t.bytes));
    println!("small files       {} (under half of {})", t.small_files, mib(t.target_file_size));
    println!("last compaction   {}", t.last_compaction.clone().unwrap_or_else(none));
    println!("last vacuum       {}", t.last_vacuum.clone().unwrap_or_else(none));
    println!("log checkpoint    {}", t.last_checkpoint_version.map_or_else(none, |v| format!("version {v}")));
    if t.apply == "merge_on_read" {
        println!("apply             merge_on_read ({} rows hidden by deletion vectors)", t.rows_hidden);
        println!("                  readers must apply deletion vectors: {DV_READERS}");
    } else {
        println!("apply             copy_on_write");
    }
}

/// Readers that read a table with deletion vectors right (and those that do not).
pub const DV_READERS: &str = "Python deltalake QueryBuilder / DeltaTable.scan(), polars read_delta/scan_delta, \
DuckDB with duckdb-ext-delta, Spark with Delta >= 2.3; not to_pyarrow_table()/to_pyarrow_dataset() or older engines";

pub fn upgrade_result(t: &TableInfo) {
    println!("{} applies changes merge-on-read from the next start of its task (deletion vectors enabled)", t.location);
    println!("it can now be read only by readers that apply deletion vectors: {DV_READERS}");
}

pub fn optimize_result(r: &OptimizeResult) {
    match r.version {
        Some(v) if r.files_removed > 0 => println!(
            "compacted {} file(s) ({}) into {} ({}) as version {v}",
            r.files_removed,
            mib(r.bytes_removed),
            r.files_added,
            mib(r.bytes_added)
        ),
        _ => println!("nothing to compact"),
    }
}

pub fn vacuum_result(r: &VacuumResult) {
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    println!("{verb} {} file(s) removed from the table more than {} ago", r.files.len(), r.retention);
    for f in &r.files {
        println!("  {f}");
    }
}
