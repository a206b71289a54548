//! SIGKILL of the daemon while a deployed task syncs a live topic: each restart resumes the
//! task from its Delta checkpoint, in the same run with a new attempt, and every message lands
//! exactly once.

#![allow(clippy::unwrap_used)]

mod common;
mod daemon_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use daemon_support::Daemon;
use rtsync_core::arrow::array::AsArray;
use rtsync_core::arrow::datatypes::{Int32Type, Int64Type};
use rtsync_sink_lakehouse::{LakehouseSinkConfig, query_table};

const MESSAGES: i64 = 6_000;
const PARTITIONS: i32 = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_daemon_resumes_deployed_tasks_exactly_once() {
    let servers = bootstrap();
    let topic = unique("dr_events");
    create_topic(&servers, &topic, PARTITIONS).await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&dir.path().join("data"));
    d.ok(&["datasource", "create", "events", "--type", "kafka", "--set", &format!("bootstrap.servers={servers}")]);
    d.ok(&["task", "create", "rt_events", "--type", "14"]);
    d.ok(&[
        "task",
        "configure",
        "rt_events",
        "--source",
        "events",
        "--source-table",
        &topic,
        "--column",
        "id=$.id:bigint",
        "--column",
        "kp=partition:int",
        "--column",
        "ko=offset:bigint",
        "--commit-interval",
        "250ms",
    ]);
    d.ok(&["task", "deploy", "rt_events", "-y"]);
    let run = d.json(&["runs", "list", "--task", "rt_events"])[0]["id"].as_i64().unwrap();

    // Produce over ~8 s while the daemon is killed three times.
    let (s, t) = (servers.clone(), topic.clone());
    let producing = std::thread::spawn(move || {
        let p = producer(&s);
        let started = Instant::now();
        for i in 0..MESSAGES {
            send(
                &p,
                &t,
                (i % PARTITIONS as i64) as i32,
                &i.to_string(),
                Some(format!("{{\"id\":{i}}}").as_bytes()),
                None,
            );
            if i % 500 == 499 {
                p.poll(Duration::ZERO);
                if let Some(w) =
                    Duration::from_millis((i as u64 * 8_000) / MESSAGES as u64).checked_sub(started.elapsed())
                {
                    std::thread::sleep(w);
                }
            }
        }
        flush(&p);
    });
    for pause in [1800u64, 2600, 1200] {
        std::thread::sleep(Duration::from_millis(pause));
        d.kill();
        d.restart();
    }
    producing.join().unwrap();

    let lake = d.json(&["datasource", "show", "lakehouse"])["properties"]["root"].as_str().unwrap().to_string();
    let table = LakehouseSinkConfig::new(&lake, "public", &topic);
    assert_eq!(wait_rows(&table, MESSAGES as u64, Duration::from_secs(120)).await, MESSAGES as u64, "{}", d.log_text());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Exactly once: every message once, no (partition, offset) twice.
    let batches = query_table(&table, "SELECT id, kp, ko FROM t").await.unwrap();
    let mut ids = HashSet::new();
    let mut positions = HashSet::new();
    let mut total = 0;
    for b in &batches {
        let (id, kp, ko) = (
            b.column(0).as_primitive::<Int64Type>(),
            b.column(1).as_primitive::<Int32Type>(),
            b.column(2).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            total += 1;
            assert!(ids.insert(id.value(i)), "id {} twice", id.value(i));
            assert!(positions.insert((kp.value(i), ko.value(i))));
        }
    }
    assert_eq!(total, MESSAGES);
    assert_eq!(ids, (0..MESSAGES).collect::<HashSet<_>>());

    // One run, resumed by each restart as a new attempt; the killed attempts are "lost".
    let runs = d.json(&["runs", "list", "--task", "rt_events"]);
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs:#}");
    assert_eq!(runs[0]["status"], "running");
    let detail = d.json(&["runs", "detail", &run.to_string()]);
    let attempts = detail["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{detail:#}");
    for a in &attempts[..3] {
        assert_eq!(a["status"], "lost");
        assert!(a["error"].as_str().unwrap().contains("killed"), "{a}");
    }
    assert_eq!(attempts[3]["status"], "running");
    assert_eq!(attempts[3]["reason"], "daemon restart");
    let log = d.json(&["attempts", "log", &run.to_string(), "--attempt", "4"]);
    let text = log["lines"].to_string();
    assert!(text.contains("task started"), "the engine's start (with its resumed epoch) is in the attempt log: {text}");
    let show = d.json(&["task", "show", "rt_events"]);
    assert_eq!(show["task"]["state"], "running");
    assert_eq!(show["status"]["position"].as_str().map(|p| p.split(',').count()), Some(3));
}
