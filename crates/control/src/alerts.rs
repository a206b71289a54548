//! Alerts: rules over the figures the daemon already keeps for each task (its state, the
//! source's lag, freshness, last commit, attempts, dead letters), one evaluator loop that
//! fires and resolves them, and their notifications (a log line, and a signed webhook).
//!
//! **State.** A rule is one row of `alert_rules`; each time its condition holds for a task
//! for longer than the rule's grace period, one row of `alert_events` opens (firing) and is
//! closed (resolved) when the condition no longer holds. At most one open event per rule and
//! task (a unique index), so the firing state is the catalog's and survives restarts: after a
//! restart a firing alert stays firing, is not notified again, and resolves later. The grace
//! period's clock is the catalog's too (`alert_pending`: when the condition began to hold,
//! by the wall clock), so a restart neither restarts it nor loses it, and every worker of a
//! shared catalog reads the same one.
//!
//! **Delivery.** Each event has a flag per state change (`fired_sent`, `resolved_sent`); the
//! evaluator posts what is not sent yet, with exponential backoff between tries, and sets the
//! flag once the receiver answered 2xx: one notification per state change. The body carries
//! an `id` (the event and its state) for receivers to drop a duplicate should the daemon stop
//! between the receiver's answer and the flag's write.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::catalog::now;
use crate::db::Row;
use crate::error::{Code, Error, Result};
use crate::model::{REDACTED, Task, TaskState, validate_name};
use crate::params;
use crate::service::Control;

/// How often the evaluator looks at every rule.
pub const EVAL_INTERVAL: Duration = Duration::from_secs(2);
/// The window of `retries>N` and `dlq-rate>N`.
pub const RATE_WINDOW: Duration = Duration::from_secs(600);
/// A webhook's answer may take this long.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// Backoff between tries of one notification: doubles from the first, up to the last.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The property name a rule's secret is sealed under (see `crate::secrets`).
const SECRET_NAME: &str = "alert.secret";
pub const SIGNATURE_HEADER: &str = "X-Rtsync-Signature";

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    /// The task is failed: an attempt ended with a definite error, or its run stopped
    /// without being asked to.
    Failed,
    /// The last commit's freshness is above this.
    Freshness(Duration),
    /// The source is ahead of the task's position by more than this (its own unit).
    Lag(i64),
    /// Nothing committed for this long while the source has data (lag > 0).
    NoData(Duration),
    /// More transient retries than this within [`RATE_WINDOW`].
    Retries(i64),
    /// More dead-lettered messages than this within [`RATE_WINDOW`].
    DlqRate(i64),
}

impl Condition {
    pub fn parse(text: &str) -> Result<Self> {
        let t = text.trim();
        if t == "failed" {
            return Ok(Condition::Failed);
        }
        let bad = || {
            Error::bad_request(format!(
                "--when {t:?}: expected failed, freshness>DURATION, lag>N, no-data>DURATION, retries>N or dlq-rate>N (e.g. freshness>30s, lag>100000, no-data>10m)"
            ))
        };
        let (what, limit) = t.split_once('>').ok_or_else(bad)?;
        let (what, limit) = (what.trim(), limit.trim());
        let dur = |s: &str| crate::duration::parse(s).map_err(|_| bad());
        let num = |s: &str| s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(bad);
        Ok(match what {
            "freshness" => Condition::Freshness(dur(limit)?),
            "lag" => Condition::Lag(num(limit)?),
            "no-data" => Condition::NoData(dur(limit)?),
            "retries" => Condition::Retries(num(limit)?),
            "dlq-rate" => Condition::DlqRate(num(limit)?),
            _ => return Err(bad()),
        })
    }
}

impl std::fmt::Display for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Condition::Failed => write!(f, "failed"),
            Condition::Freshness(d) => write!(f, "freshness>{}", crate::duration::format(*d)),
            Condition::Lag(n) => write!(f, "lag>{n}"),
            Condition::NoData(d) => write!(f, "no-data>{}", crate::duration::format(*d)),
            Condition::Retries(n) => write!(f, "retries>{n}"),
            Condition::DlqRate(n) => write!(f, "dlq-rate>{n}"),
        }
    }
}

/// `POST /api/v1/alerts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlert {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,100}$")]
    pub name: String,
    #[serde(default)]
    pub task: Option<String>,
    #[serde(default)]
    pub folder: Option<String>,
    #[serde(default)]
    pub vcluster: Option<String>,
    /// `failed`, `freshness>30s`, `lag>100000`, `no-data>10m`, `retries>3`, `dlq-rate>10`.
    pub when: String,
    /// The grace period: the condition must hold this long (`1m`); none by default.
    #[serde(default)]
    pub r#for: Option<String>,
    #[serde(default)]
    pub webhook: Option<String>,
    /// The HMAC key of the webhook's signature.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A rule as the API shows it (the secret redacted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertRule {
    pub id: i64,
    pub name: String,
    /// task, folder or vcluster.
    pub scope_kind: String,
    pub scope: String,
    pub condition: String,
    pub for_secs: i64,
    pub webhook: Option<String>,
    /// `***` when the rule has one.
    pub secret: Option<String>,
    pub created_at: String,
    /// Its alerts that fire now.
    #[serde(default)]
    pub firing: i64,
}

/// One alert: a rule's condition held for a task from `fired_at` to `resolved_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertEvent {
    pub id: i64,
    pub rule: String,
    pub task: String,
    pub condition: String,
    /// The figure that crossed the threshold when it fired (the error, for `failed`).
    pub value: String,
    /// firing or resolved.
    pub state: String,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    pub fired_sent: bool,
    pub resolved_sent: bool,
    /// Why the last webhook try failed, if it did.
    pub delivery_error: Option<String>,
}

/// `alert show`: the rule and its recent alerts, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertDetail {
    pub rule: AlertRule,
    pub events: Vec<AlertEvent>,
}

/// `alert test`: what the webhook answered.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertTestResult {
    pub rule: String,
    pub webhook: Option<String>,
    /// The receiver's HTTP status (None: no webhook, the log line only).
    pub status: Option<u16>,
    pub message: String,
}

/// The webhook's JSON body (documented in the README, "Alerts").
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// `<event id>-<state>`: the same for every try of one notification.
    pub id: String,
    pub rule: String,
    pub task: String,
    pub condition: String,
    pub value: String,
    /// firing, resolved, or test.
    pub state: String,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    pub sent_at: String,
}

const RULE_COLUMNS: &str = "r.id, r.name, r.scope_kind, r.scope, r.condition, r.for_secs, r.webhook, r.secret, r.created_at, (SELECT count(*) FROM alert_events e WHERE e.rule_id = r.id AND e.resolved_at IS NULL)";
const EVENT_COLUMNS: &str = "e.id, r.name, e.task, r.condition, e.value, e.fired_at, e.resolved_at, e.fired_sent, e.resolved_sent, e.delivery_error";

/// A rule as stored, with its secret.
#[derive(Debug, Clone)]
struct StoredRule {
    shown: AlertRule,
    condition: Condition,
    secret: Option<String>,
}

fn rule_row(r: &Row) -> Result<StoredRule> {
    let secret = r.opt_text(7)?;
    let condition_text = r.text(4)?;
    Ok(StoredRule {
        condition: Condition::parse(&condition_text)?,
        shown: AlertRule {
            id: r.i64(0)?,
            name: r.text(1)?,
            scope_kind: r.text(2)?,
            scope: r.text(3)?,
            condition: condition_text,
            for_secs: r.i64(5)?,
            webhook: r.opt_text(6)?,
            secret: secret.as_ref().map(|_| REDACTED.to_string()),
            created_at: r.text(8)?,
            firing: r.i64(9)?,
        },
        secret,
    })
}

fn event_row(r: &Row) -> Result<AlertEvent> {
    let resolved_at = r.opt_text(6)?;
    Ok(AlertEvent {
        id: r.i64(0)?,
        rule: r.text(1)?,
        task: r.text(2)?,
        condition: r.text(3)?,
        value: r.text(4)?,
        state: if resolved_at.is_some() { "resolved" } else { "firing" }.to_string(),
        fired_at: r.text(5)?,
        resolved_at,
        fired_sent: r.i64(7)? != 0,
        resolved_sent: r.i64(8)? != 0,
        delivery_error: r.opt_text(9)?,
    })
}

fn rule_not_found(name: &str) -> Error {
    Error::not_found(format!("alert rule {name:?} does not exist (`rtsync alert list` shows them)"))
}

fn check_webhook(url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| Error::bad_request(format!("--webhook {url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(Error::bad_request(format!("--webhook {url:?}: expected an http:// or https:// URL with a host")));
    }
    Ok(())
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&chrono::Utc))
}

fn since(text: &str) -> Option<Duration> {
    parse_time(text).and_then(|t| (chrono::Utc::now() - t).to_std().ok())
}

impl Control {
    pub async fn create_alert(&self, req: CreateAlert) -> Result<AlertRule> {
        validate_name("alert rule", &req.name)?;
        let scopes: Vec<(&str, &String)> = [("task", &req.task), ("folder", &req.folder), ("vcluster", &req.vcluster)]
            .into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect();
        let (kind, scope) = match scopes.as_slice() {
            [one] => *one,
            [] => return Err(Error::bad_request("an alert rule needs a scope: --task T, --folder F or --vcluster V")),
            _ => return Err(Error::bad_request("give one scope: --task, --folder or --vcluster, not several")),
        };
        let known = match kind {
            "task" => self.catalog.task(scope).await?.is_some(),
            "folder" => self.catalog.folder(scope).await?.is_some(),
            _ => self.catalog.vcluster(scope).await?.is_some(),
        };
        if !known {
            return Err(Error::not_found(format!("{kind} {scope:?} does not exist (`rtsync {kind} list` shows them)")));
        }
        let condition = Condition::parse(&req.when)?;
        let for_secs = match req.r#for.as_deref() {
            Some(text) => crate::duration::parse(text)
                .map_err(|_| Error::bad_request(format!("--for {text:?}: expected a duration such as 30s, 1m, 1h")))?
                .as_secs() as i64,
            None => 0,
        };
        if let Some(url) = &req.webhook {
            check_webhook(url)?;
        }
        if req.secret.is_some() && req.webhook.is_none() {
            return Err(Error::bad_request("--secret signs the webhook's notifications: give --webhook URL too"));
        }
        if req.secret.as_deref().is_some_and(str::is_empty) {
            return Err(Error::bad_request("--secret is empty"));
        }
        let secret = match (&req.secret, self.secrets.key()) {
            (Some(s), Some(key)) => Some(key.seal(SECRET_NAME, s)?),
            (s, None) => s.clone(),
            (None, _) => None,
        };
        if self
            .catalog
            .db()
            .query_opt("SELECT id FROM alert_rules WHERE name = $1", params![&req.name])
            .await?
            .is_some()
        {
            return Err(Error::conflict(format!("alert rule {:?} exists already", req.name)));
        }
        self.catalog
            .db()
            .execute(
                "INSERT INTO alert_rules (name, scope_kind, scope, condition, for_secs, webhook, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                params![&req.name, kind, scope, condition.to_string(), for_secs, req.webhook.clone(), secret, now()],
            )
            .await?;
        tracing::info!(rule = %req.name, scope = %format!("{kind} {scope}"), condition = %condition, "alert rule created");
        Ok(self.stored_rule(&req.name).await?.shown)
    }

    async fn stored_rule(&self, name: &str) -> Result<StoredRule> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM alert_rules r WHERE r.name = $1");
        let row = self.catalog.db().query_opt(&sql, params![name]).await?.ok_or_else(|| rule_not_found(name))?;
        rule_row(&row)
    }

    async fn stored_rules(&self) -> Result<Vec<StoredRule>> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM alert_rules r ORDER BY r.name");
        self.catalog.db().query(&sql, &[]).await?.iter().map(rule_row).collect()
    }

    pub async fn alerts(&self) -> Result<Vec<AlertRule>> {
        Ok(self.stored_rules().await?.into_iter().map(|r| r.shown).collect())
    }

    pub async fn alert(&self, name: &str) -> Result<AlertDetail> {
        let rule = self.stored_rule(name).await?.shown;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM alert_events e JOIN alert_rules r ON r.id = e.rule_id WHERE e.rule_id = $1 ORDER BY e.id DESC LIMIT 100"
        );
        let events =
            self.catalog.db().query(&sql, params![rule.id]).await?.iter().map(event_row).collect::<Result<_>>()?;
        Ok(AlertDetail { rule, events })
    }

    /// Alerts of every rule, newest first: the firing ones only, or the history too.
    pub async fn alert_events(&self, firing_only: bool) -> Result<Vec<AlertEvent>> {
        let filter = if firing_only { "WHERE e.resolved_at IS NULL" } else { "" };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM alert_events e JOIN alert_rules r ON r.id = e.rule_id {filter} ORDER BY e.id DESC LIMIT 200"
        );
        self.catalog.db().query(&sql, &[]).await?.iter().map(event_row).collect()
    }

    pub async fn delete_alert(&self, name: &str) -> Result<()> {
        let rule = self.stored_rule(name).await?;
        let mut tx = self.catalog.db().begin().await?;
        tx.execute("DELETE FROM alert_events WHERE rule_id = $1", params![rule.shown.id]).await?;
        tx.execute("DELETE FROM alert_pending WHERE rule_id = $1", params![rule.shown.id]).await?;
        tx.execute("DELETE FROM alert_rules WHERE id = $1", params![rule.shown.id]).await?;
        tx.commit().await?;
        tracing::info!(rule = %name, "alert rule deleted");
        Ok(())
    }

    /// Sends a test notification through the rule's channels now.
    pub async fn test_alert(&self, name: &str) -> Result<AlertTestResult> {
        let rule = self.stored_rule(name).await?;
        let n = Notification {
            id: format!("test-{}", chrono::Utc::now().timestamp_millis()),
            rule: rule.shown.name.clone(),
            task: rule.shown.scope.clone(),
            condition: rule.shown.condition.clone(),
            value: "test".into(),
            state: "test".into(),
            fired_at: now(),
            resolved_at: None,
            sent_at: now(),
        };
        tracing::warn!(rule = %n.rule, task = %n.task, condition = %n.condition, "alert test");
        let Some(url) = rule.shown.webhook.clone() else {
            return Ok(AlertTestResult {
                rule: n.rule,
                webhook: None,
                status: None,
                message: "no webhook: the test notification went to the daemon's log only".into(),
            });
        };
        let secret = self.rule_secret(&rule)?;
        let status = post(&url, secret.as_deref(), &n).await.map_err(|e| {
            Error::new(Code::Unavailable, format!("the webhook {url} did not take the test notification: {e}"))
        })?;
        Ok(AlertTestResult {
            rule: n.rule,
            webhook: Some(url),
            status: Some(status),
            message: format!("the webhook answered {status}"),
        })
    }

    fn rule_secret(&self, rule: &StoredRule) -> Result<Option<String>> {
        match (&rule.secret, self.secrets.key()) {
            (Some(s), Some(key)) if crate::secrets::is_encrypted(s) => key.open(SECRET_NAME, s).map(Some),
            (Some(s), None) if crate::secrets::is_encrypted(s) => Err(Error::bad_request(format!(
                "alert rule {}: its secret is encrypted and this daemon has no key",
                rule.shown.name
            ))),
            (s, _) => Ok(s.clone()),
        }
    }

    fn tasks_in_scope(rule: &AlertRule, all: &[Task]) -> Vec<Task> {
        all.iter()
            .filter(|t| match rule.scope_kind.as_str() {
                "task" => t.name == rule.scope,
                "folder" => t.folder == rule.scope,
                _ => t.vcluster == rule.scope,
            })
            .cloned()
            .collect()
    }

    /// Counts attempts after the first of the task's open run started within the window.
    async fn recent_retries(&self, task: &Task) -> Result<i64> {
        let Some(run) = self.catalog.open_run(task.id).await? else { return Ok(0) };
        let attempts = self.catalog.attempts(run.id).await?;
        Ok(attempts.iter().filter(|a| a.attempt > 1 && since(&a.started_at).is_some_and(|d| d <= RATE_WINDOW)).count()
            as i64)
    }
}

/// Posts one notification; the receiver's status when it is 2xx.
async fn post(url: &str, secret: Option<&str>, n: &Notification) -> std::result::Result<u16, String> {
    let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build().map_err(|e| e.to_string())?;
    let mut req = client.post(url).header("content-type", "application/json").header("user-agent", "rtsync-alerts");
    if let Some(s) = secret {
        req = req.header(SIGNATURE_HEADER, signature(s, &body));
    }
    let resp = req.body(body).send().await.map_err(|e| format!("{e}"))?;
    let status = resp.status().as_u16();
    if resp.status().is_success() { Ok(status) } else { Err(format!("it answered {status}")) }
}

/// The evaluator's memory: when each condition began to hold (the grace period; a copy of
/// `alert_pending`, read again every round), the dead-letter counts seen, and the backoff of
/// notifications that failed.
#[derive(Default)]
struct Evaluator {
    pending: HashMap<(i64, String), String>,
    dead_letters: HashMap<String, Vec<(Instant, i64)>>,
    backoff: HashMap<(i64, &'static str), (u32, Instant)>,
}

/// Runs the evaluator until shutdown.
pub async fn run(control: Arc<Control>, mut shutdown: watch::Receiver<bool>) {
    let mut ev = Evaluator::default();
    loop {
        if let Err(e) = ev.round(&control).await {
            tracing::warn!(error = %e, "alert evaluation failed; trying again at the next round");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVAL_INTERVAL) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

impl Evaluator {
    async fn round(&mut self, c: &Control) -> Result<()> {
        let rules = c.stored_rules().await?;
        if rules.is_empty() {
            return Ok(());
        }
        let tasks = c.catalog.tasks(None).await?;
        self.pending = c
            .catalog
            .db()
            .query("SELECT rule_id, task, since FROM alert_pending", &[])
            .await?
            .iter()
            .map(|r| Ok(((r.i64(0)?, r.text(1)?), r.text(2)?)))
            .collect::<Result<_>>()?;
        let mut details = HashMap::new();
        for rule in &rules {
            let mut seen = HashSet::new();
            for task in Control::tasks_in_scope(&rule.shown, &tasks) {
                seen.insert(task.name.clone());
                // With several workers, a running task's live figures (freshness, dead
                // letters) are only on the worker that runs it: that one evaluates it, so that
                // another worker's empty view does not resolve what it fired.
                if c.cluster.is_some() && task.state == TaskState::Running && !c.scheduler.is_active(task.id) {
                    continue;
                }
                let detail = match details.get(&task.name) {
                    Some(d) => d,
                    None => match c.task_detail(&task.name).await {
                        Ok(d) => details.entry(task.name.clone()).or_insert(d),
                        Err(e) => {
                            // Deleted since the list was read, or its catalog rows are being
                            // written: the next round looks again; its alerts stay as they are.
                            tracing::debug!(task = %task.name, error = %e, "alert evaluation skipped a task");
                            continue;
                        }
                    },
                };
                let holds = self.check(c, rule.condition, &task, detail).await?;
                self.settle(c, rule, &task.name, holds).await?;
            }
            // Tasks deleted or moved out of the scope: their alerts resolve.
            for open in self.open_events(c, rule.shown.id).await? {
                if !seen.contains(&open.1) {
                    self.settle(c, rule, &open.1, None).await?;
                }
            }
        }
        self.deliver(c).await
    }

    /// The figure that crosses the rule's threshold, when it does.
    async fn check(
        &mut self,
        c: &Control,
        cond: Condition,
        task: &Task,
        d: &crate::model::TaskDetail,
    ) -> Result<Option<String>> {
        let s = &d.status;
        Ok(match cond {
            Condition::Failed => (task.state == TaskState::Failed)
                .then(|| task.last_error.clone().unwrap_or_else(|| "failed".to_string())),
            Condition::Freshness(limit) => s
                .freshness_ms
                .filter(|ms| *ms as u128 > limit.as_millis())
                .map(|ms| format!("{:.1}s", ms as f64 / 1000.0)),
            Condition::Lag(limit) => s.lag.filter(|l| *l > limit).map(|l| l.to_string()),
            Condition::NoData(limit) => {
                let idle = s.last_commit_at.as_deref().and_then(since).or_else(|| since(&task.updated_at));
                (s.lag.unwrap_or(0) > 0 && task.state.is_deployed() && idle.is_some_and(|i| i > limit))
                    .then(|| format!("no commit for {}s, lag {}", idle.map_or(0, |i| i.as_secs()), s.lag.unwrap_or(0)))
            }
            Condition::Retries(limit) => {
                let n = c.recent_retries(task).await?;
                (n > limit).then(|| n.to_string())
            }
            Condition::DlqRate(limit) => {
                let now = Instant::now();
                let samples = self.dead_letters.entry(task.name.clone()).or_default();
                if samples.last().is_none_or(|(at, _)| now.duration_since(*at) >= EVAL_INTERVAL) {
                    samples.push((now, s.dead_lettered));
                }
                samples.retain(|(at, _)| now.duration_since(*at) <= RATE_WINDOW);
                let first = samples.first().map_or(s.dead_lettered, |(_, n)| *n);
                let n = (s.dead_lettered - first).max(0);
                (n > limit).then(|| n.to_string())
            }
        })
    }

    async fn open_events(&self, c: &Control, rule_id: i64) -> Result<Vec<(i64, String)>> {
        c.catalog
            .db()
            .query("SELECT id, task FROM alert_events WHERE rule_id = $1 AND resolved_at IS NULL", params![rule_id])
            .await?
            .iter()
            .map(|r| Ok((r.i64(0)?, r.text(1)?)))
            .collect()
    }

    /// Opens an alert once the condition held for the grace period; resolves an open one
    /// once it no longer holds.
    async fn settle(&mut self, c: &Control, rule: &StoredRule, task: &str, holds: Option<String>) -> Result<()> {
        let key = (rule.shown.id, task.to_string());
        let open = c
            .catalog
            .db()
            .query_opt(
                "SELECT id FROM alert_events WHERE rule_id = $1 AND task = $2 AND resolved_at IS NULL",
                params![rule.shown.id, task],
            )
            .await?
            .map(|r| r.i64(0))
            .transpose()?;
        match (holds, open) {
            (Some(value), None) => {
                let began = match self.pending.get(&key) {
                    Some(at) => at.clone(),
                    None => {
                        let at = now();
                        c.catalog
                            .db()
                            .execute(
                                "INSERT INTO alert_pending (rule_id, task, since) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                params![rule.shown.id, task, &at],
                            )
                            .await?;
                        self.pending.insert(key.clone(), at.clone());
                        at
                    }
                };
                if since(&began).unwrap_or_default() >= Duration::from_secs(rule.shown.for_secs as u64) {
                    self.forget_pending(c, &key).await?;
                    let inserted = c
                        .catalog
                        .db()
                        .execute(
                            "INSERT INTO alert_events (rule_id, task, value, fired_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                            params![rule.shown.id, task, &value, now()],
                        )
                        .await?;
                    if inserted > 0 {
                        tracing::warn!(rule = %rule.shown.name, task, condition = %rule.condition, value = %value, "alert firing");
                    }
                }
            }
            (None, Some(id)) => {
                self.forget_pending(c, &key).await?;
                c.catalog
                    .db()
                    .execute(
                        "UPDATE alert_events SET resolved_at = $2 WHERE id = $1 AND resolved_at IS NULL",
                        params![id, now()],
                    )
                    .await?;
                tracing::info!(rule = %rule.shown.name, task, condition = %rule.condition, "alert resolved");
            }
            (None, None) | (Some(_), Some(_)) => self.forget_pending(c, &key).await?,
        }
        Ok(())
    }

    /// Ends a grace period's clock, in the catalog too (only when there is one: no write in
    /// the common case).
    async fn forget_pending(&mut self, c: &Control, key: &(i64, String)) -> Result<()> {
        if self.pending.remove(key).is_some() {
            c.catalog
                .db()
                .execute("DELETE FROM alert_pending WHERE rule_id = $1 AND task = $2", params![key.0, &key.1])
                .await?;
        }
        Ok(())
    }

    /// Posts the notifications not sent yet, each when its backoff allows.
    async fn deliver(&mut self, c: &Control) -> Result<()> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, r.webhook FROM alert_events e JOIN alert_rules r ON r.id = e.rule_id
             WHERE e.fired_sent = 0 OR (e.resolved_at IS NOT NULL AND e.resolved_sent = 0) ORDER BY e.id"
        );
        let rows = c.catalog.db().query(&sql, &[]).await?;
        let rules: HashMap<String, StoredRule> =
            c.stored_rules().await?.into_iter().map(|r| (r.shown.name.clone(), r)).collect();
        for row in rows {
            let ev = event_row(&row)?;
            let Some(rule) = rules.get(&ev.rule) else { continue };
            let state: &'static str = if !ev.fired_sent { "firing" } else { "resolved" };
            let column = if state == "firing" { "fired_sent" } else { "resolved_sent" };
            let webhook = row.opt_text(10)?;
            if let Some(url) = webhook {
                if let Some((_, next)) = self.backoff.get(&(ev.id, state))
                    && Instant::now() < *next
                {
                    continue;
                }
                let n = Notification {
                    id: format!("{}-{state}", ev.id),
                    rule: ev.rule.clone(),
                    task: ev.task.clone(),
                    condition: ev.condition.clone(),
                    value: ev.value.clone(),
                    state: state.to_string(),
                    fired_at: ev.fired_at.clone(),
                    resolved_at: if state == "resolved" { ev.resolved_at.clone() } else { None },
                    sent_at: now(),
                };
                let secret = c.rule_secret(rule)?;
                if let Err(e) = post(&url, secret.as_deref(), &n).await {
                    let tries = self.backoff.get(&(ev.id, state)).map_or(0, |(t, _)| *t) + 1;
                    let wait = BACKOFF_FIRST.saturating_mul(1u32 << (tries.min(16) - 1)).min(BACKOFF_MAX);
                    self.backoff.insert((ev.id, state), (tries, Instant::now() + wait));
                    tracing::warn!(rule = %ev.rule, task = %ev.task, state, tries, retry_in_s = wait.as_secs(), error = %e, "alert webhook failed");
                    c.catalog
                        .db()
                        .execute("UPDATE alert_events SET delivery_error = $2 WHERE id = $1", params![ev.id, e])
                        .await?;
                    continue;
                }
                self.backoff.remove(&(ev.id, state));
            }
            c.catalog
                .db()
                .execute(
                    &format!("UPDATE alert_events SET {column} = 1, delivery_error = NULL WHERE id = $1"),
                    params![ev.id],
                )
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn conditions_parse_and_print_back() {
        for text in ["failed", "freshness>30s", "lag>100000", "no-data>10m", "retries>3", "dlq-rate>10"] {
            assert_eq!(Condition::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Condition::parse("lag>5").unwrap(), Condition::Lag(5));
        assert_eq!(Condition::parse(" freshness > 2m ").unwrap(), Condition::Freshness(Duration::from_secs(120)));
        for bad in ["", "lag", "lag>x", "lag>-1", "speed>3", "freshness>fast", "failed>1"] {
            let e = Condition::parse(bad).unwrap_err();
            assert!(e.message.contains("expected failed"), "{bad}: {}", e.message);
        }
    }

    /// A receiver on loopback: answers 200 (or 500 for the first `fail_first` requests) and
    /// sends each body it took.
    async fn receiver(fail_first: usize) -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut served = 0;
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let body = loop {
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap();
                        if body.len() >= len {
                            break body.to_string();
                        }
                    }
                };
                served += 1;
                let status = if served <= fail_first { "500 Internal Server Error" } else { "200 OK" };
                s.write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
                    .await
                    .unwrap();
                if served > fail_first {
                    tx.send(serde_json::from_str(&body).unwrap()).unwrap();
                }
            }
        });
        (url, rx)
    }

    /// The evaluator's statements on either catalog: a `failed` rule fires once, a failed
    /// delivery is tried again after its backoff, the alert resolves once, and a new evaluator
    /// (a restart) sends nothing again.
    async fn fire_retry_resolve(catalog: crate::catalog::Catalog) {
        let scheduler = crate::scheduler::Scheduler::new(catalog.clone(), "w1".into(), "127.0.0.1:1".into());
        let c = Control::new(catalog.clone(), scheduler, crate::secrets::Secrets::plaintext(), None);
        let folder = catalog.insert_folder("f").await.unwrap();
        catalog.insert_vcluster("v", "SYNC", 2).await.unwrap();
        let t = catalog.insert_task("t1", 14, folder.id, "v").await.unwrap();
        let (url, mut got) = receiver(1).await;
        let req = CreateAlert {
            name: "r".into(),
            folder: Some("f".into()),
            when: "failed".into(),
            webhook: Some(url),
            ..Default::default()
        };
        c.create_alert(req).await.unwrap();
        let mut ev = Evaluator::default();
        ev.round(&c).await.unwrap();
        assert!(c.alert_events(true).await.unwrap().is_empty(), "a draft task is not failed");

        catalog.set_state(t.id, TaskState::Failed).await.unwrap();
        catalog.set_last_error(t.id, Some("the topic does not exist")).await.unwrap();
        ev.round(&c).await.unwrap();
        let firing = c.alert_events(true).await.unwrap();
        assert_eq!(firing.len(), 1);
        assert_eq!((firing[0].value.as_str(), firing[0].fired_sent), ("the topic does not exist", false));
        assert!(firing[0].delivery_error.as_deref().unwrap().contains("500"), "{firing:?}");
        ev.round(&c).await.unwrap();
        assert!(got.try_recv().is_err(), "not tried again before its backoff");
        tokio::time::sleep(BACKOFF_FIRST).await;
        ev.round(&c).await.unwrap();
        let n = got.recv().await.unwrap();
        assert_eq!((n["state"].as_str(), n["task"].as_str()), (Some("firing"), Some("t1")));
        assert!(c.alert_events(true).await.unwrap()[0].fired_sent);

        let mut restarted = Evaluator::default();
        restarted.round(&c).await.unwrap();
        assert!(got.try_recv().is_err(), "still firing after a restart, not sent again");
        catalog.set_state(t.id, TaskState::Running).await.unwrap();
        restarted.round(&c).await.unwrap();
        let n = got.recv().await.unwrap();
        assert_eq!(
            (n["state"].as_str(), n["id"].as_str()),
            (Some("resolved"), Some(format!("{}-resolved", firing[0].id).as_str()))
        );
        restarted.round(&c).await.unwrap();
        assert!(got.try_recv().is_err(), "one notification per state change");
        let detail = c.alert("r").await.unwrap();
        assert_eq!(
            (detail.rule.firing, detail.events[0].state.as_str(), detail.events[0].resolved_sent),
            (0, "resolved", true)
        );
        c.delete_alert("r").await.unwrap();
        assert!(c.alert_events(false).await.unwrap().is_empty());

        // A grace period's clock survives a restart: a condition that began before it fires
        // once the period is over, without starting the clock again.
        let failed_for = |name: &str, grace: &str| CreateAlert {
            name: name.into(),
            folder: Some("f".into()),
            when: "failed".into(),
            r#for: Some(grace.into()),
            ..Default::default()
        };
        c.create_alert(failed_for("slow", "2s")).await.unwrap();
        catalog.set_state(t.id, TaskState::Failed).await.unwrap();
        let mut before = Evaluator::default();
        before.round(&c).await.unwrap();
        assert!(c.alert_events(true).await.unwrap().is_empty(), "within the grace period");
        drop(before);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let mut after = Evaluator::default();
        after.round(&c).await.unwrap();
        assert_eq!(c.alert_events(true).await.unwrap().len(), 1, "the grace period ran across the restart");
        let pending = |catalog: crate::catalog::Catalog| async move {
            catalog.db().query("SELECT task FROM alert_pending", &[]).await.unwrap().len()
        };
        assert_eq!(pending(catalog.clone()).await, 0, "a fired alert needs no clock");
        // A condition that ends within its grace period leaves no clock behind.
        catalog.set_state(t.id, TaskState::Running).await.unwrap();
        after.round(&c).await.unwrap();
        c.delete_alert("slow").await.unwrap();
        c.create_alert(failed_for("slower", "1h")).await.unwrap();
        catalog.set_state(t.id, TaskState::Failed).await.unwrap();
        after.round(&c).await.unwrap();
        assert_eq!(pending(catalog.clone()).await, 1);
        catalog.set_state(t.id, TaskState::Running).await.unwrap();
        Evaluator::default().round(&c).await.unwrap();
        assert_eq!(pending(catalog.clone()).await, 0, "a restarted evaluator ends a clock it did not start");
        assert!(c.alert_events(true).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn sqlite_alerts_fire_retry_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _) = crate::catalog::Catalog::open(None, dir.path()).await.unwrap();
        fire_retry_resolve(catalog).await;
    }

    #[tokio::test]
    async fn postgres_alerts_fire_retry_and_resolve() {
        let url = crate::db::test_database("alerts").await;
        let dir = tempfile::tempdir().unwrap();
        let (catalog, _) = crate::catalog::Catalog::open(Some(&url), dir.path()).await.unwrap();
        fire_retry_resolve(catalog).await;
    }

    #[test]
    fn signature_is_the_hmac_sha256_of_the_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
