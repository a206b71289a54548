//! `rtsync-mssql-sim`: the simulated SQL Server as a process, for trying the connector and for
//! tests that run the daemon.
//!
//! ```text
//! rtsync-mssql-sim [--port 0] [--schema dbo] [--table orders] [--rows 1000] [--seed 1]
//!                  [--tx-per-sec 50] [--user rtsync] [--password Sim_Passw0rd] [--database rtsync_sim]
//! ```
//!
//! It creates the table with a column of every SQL Server type the connector maps, copies in
//! `--rows` rows, prints `url=mssql://…` (the data source URL) on stdout, and then runs
//! `--tx-per-sec` random transactions a second (0: none), the capture job every 100 ms.
//! Commands on stdin, one a line: `pause`, `resume`, `stats` (prints `rows=N max_lsn=0x…
//! transactions=N`), `quit`. Without a stdin it runs until killed.

use std::time::Duration;

use rtsync_mssql_sim::workload::{Workload, every_type_table};
use rtsync_mssql_sim::{Credentials, TdsSim};

fn usage(msg: &str) -> ! {
    eprintln!("rtsync-mssql-sim: {msg}");
    eprintln!(
        "usage: rtsync-mssql-sim [--port N] [--schema S] [--table T] [--rows N] [--seed N] [--tx-per-sec N] [--user U] [--password P] [--database D]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut creds = Credentials::default();
    let (mut port, mut schema, mut table) = (0u16, "dbo".to_string(), "orders".to_string());
    let (mut rows, mut seed, mut rate) = (1_000usize, 1u64, 50u64);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| v.parse::<u64>().unwrap_or_else(|_| usage(&format!("{flag}: {v:?} is not a number")));
        match flag.as_str() {
            "--port" => port = num(&value) as u16,
            "--schema" => schema = value,
            "--table" => table = value,
            "--rows" => rows = num(&value) as usize,
            "--seed" => seed = num(&value),
            "--tx-per-sec" => rate = num(&value),
            "--user" => creds.user = value,
            "--password" => creds.password = value,
            "--database" => creds.database = value,
            other => usage(&format!("unknown option {other}")),
        }
    }
    let db = every_type_table(&schema, &table);
    let mut workload = Workload::new(seed);
    workload.seed(&db, rows);
    let sim = TdsSim::start(db.clone(), creds, port)
        .await
        .unwrap_or_else(|e| usage(&format!("cannot listen on 127.0.0.1:{port}: {e}")));
    println!("url={}", sim.url());

    // stdin on a thread of its own (tokio's stdin needs a feature the workspace does not build).
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut paused = rate == 0;
    // Without a stdin (EOF) it runs until killed.
    let mut stdin_open = true;
    let period = Duration::from_micros(1_000_000 / rate.max(1));
    let mut tick = tokio::time::interval(period);
    let mut capture = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick(), if !paused => workload.transaction(&db),
            _ = capture.tick() => db.lock().capture(),
            line = lines.recv(), if stdin_open => match line.as_deref().map(str::trim) {
                Some("pause") => paused = true,
                Some("resume") => paused = rate == 0,
                Some("stats") => {
                    let d = db.lock();
                    println!("rows={} max_lsn={} transactions={}", d.table().len(), d.max_lsn(), workload.counts.transactions);
                }
                Some("quit") => return,
                None => stdin_open = false,
                Some(other) => eprintln!("rtsync-mssql-sim: unknown command {other:?} (pause, resume, stats, quit)"),
            },
        }
    }
}
