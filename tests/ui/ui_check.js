// Drives the daemon's web UI in headless Chromium (Debian's chromium, through playwright-core)
// the way a user would, through the whole workflow: create a Kafka data source and test it,
// browse its topic, create a task, configure it with the suggested JSONPath columns, preview,
// deploy, watch the charts move, stop and start it, read an attempt's log, and look at the
// target table's health, and create an alert rule and test it. A screenshot is saved after
// every step.
//
// Usage: node ui_check.js CONFIG_JSON
//   CONFIG_JSON: {"base", "chromium", "artifacts", "servers", "topic", "datasource", "task", "table", "initial"}
// Prints one JSON object on stdout: what the user saw at each step (or {"failed", "step", ...}).
//
// Nothing here sleeps for a fixed time to decide an outcome: every step waits for a condition,
// bounded by STEP_MS, and the whole run by TOTAL_MS. The browser reaches loopback only.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const cfg = JSON.parse(process.argv[2]);
const STEP_MS = 30000;
const DEPLOY_MS = 90000;
const TOTAL_MS = 300000;

const out = { screenshots: [], errors: [], blocked: [] };
let browser = null;
let page = null;
let current = "start";

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// A hung browser must never hang CI.
setTimeout(() => {
  emit({ failed: `the UI check took longer than ${TOTAL_MS / 1000} s`, step: current, ...out });
  process.exit(2);
}, TOTAL_MS).unref();

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

// Chromium on loopback only: names resolve to nothing but localhost, anything else goes to a
// proxy that does not exist, and nothing phones home (updates, sync, metrics, safe browsing).
// --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-dev-shm-usage", // a container's small /dev/shm must not crash the renderer
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
  "--proxy-server=127.0.0.1:9",
  "--proxy-bypass-list=127.0.0.1;localhost;[::1]",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-domain-reliability",
  "--disable-client-side-phishing-detection",
  "--disable-sync",
  "--disable-default-apps",
  "--no-first-run",
  "--no-pings",
  "--metrics-recording-only",
  "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,CertificateTransparencyComponentUpdater",
];

let shot = 0;
async function step(name, fn) {
  current = name;
  const result = await fn();
  shot += 1;
  const file = path.join(cfg.artifacts, `${String(shot).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  out.screenshots.push(file);
  return result;
}

// Waits until fn(arg) is truthy in the page; returns its value.
async function until(what, fn, arg, ms = STEP_MS) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: ms, polling: 100 });
    return await handle.jsonValue();
  } catch (e) {
    throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
  }
}

const text = (sel) => page.locator(sel).first().innerText();
const flashed = (good, substring) =>
  until(
    `the message "${substring}"`,
    ([cls, s]) => [...document.querySelectorAll("#flash .msg")].some((m) => m.classList.contains(cls) && m.textContent.includes(s)),
    [good ? "good" : "bad", substring],
  );

// The task page's status as {label: value}.
const statusOf = () =>
  page.evaluate(() =>
    Object.fromEntries([...document.querySelectorAll("#t-status .kv")].map((kv) => [kv.querySelector("span").textContent, kv.querySelector("div").textContent])),
  );
const chartOf = (id) =>
  page.evaluate((id) => {
    const c = document.getElementById(id);
    const j = (v) => (v ? JSON.parse(v) : null);
    return { points: Number(c.dataset.points || 0), latest: j(c.dataset.latest), unit: c.dataset.unit, x_ticks: j(c.dataset.xTicks), y_ticks: j(c.dataset.yTicks) };
  }, id);
// "Rows synced" on the task page, as a number (-1 when not shown).
const rowsSynced = () =>
  page.evaluate(() => {
    const kv = [...document.querySelectorAll("#t-status .kv")].find((k) => k.querySelector("span").textContent === "Rows synced");
    return kv ? Number(kv.querySelector("div").textContent.replace(/[^0-9]/g, "")) : -1;
  });
// Waits until the task page shows more than `n` rows synced.
async function rowsAbove(what, n, ms) {
  const deadline = Date.now() + ms;
  while ((await rowsSynced()) <= n) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await page.waitForTimeout(100); // polling, not an outcome: the deadline decides
  }
}
// Waits for the status to have refreshed `n` more times (each refresh adds a chart point).
async function refreshes(n) {
  const before = (await chartOf("c-rate")).points;
  await until(`${n} status refreshes`, ([b, n]) => Number(document.getElementById("c-rate").dataset.points || 0) >= b + n, [before, n]);
}

async function main() {
  fs.mkdirSync(cfg.artifacts, { recursive: true });
  browser = await chromium.launch({ executablePath: cfg.chromium, headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, serviceWorkers: "block" });
  // Belt and braces on top of the flags: a request off loopback is refused and recorded.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    let host = "";
    try {
      host = new URL(url).hostname;
    } catch (e) {}
    if (url.startsWith("data:") || LOOPBACK.has(host)) return route.continue();
    out.blocked.push(url);
    return route.abort("blockedbyclient");
  });
  page = await context.newPage();
  page.on("pageerror", (e) => out.errors.push("page error: " + e.message));
  page.on("console", (m) => m.type() === "error" && out.errors.push("console: " + m.text()));
  page.on("dialog", (d) => d.accept(cfg.topic)); // the data source test asks which object to check
  out.browser = browser.version();

  await step("tasks-empty", async () => {
    await page.goto(cfg.base + "/ui/#/tasks");
    await page.locator("#create").waitFor({ timeout: STEP_MS });
    await until("the daemon's version", () => document.getElementById("ver").textContent.startsWith("daemon "));
    out.version = await text("#ver");
    out.tasks_before = await page.locator("#main table tr").count();
  });

  await step("datasource-created", async () => {
    await page.click("#nav-datasources");
    await page.locator("#newds").waitFor({ timeout: STEP_MS });
    await page.fill("#newds input[name=name]", cfg.datasource);
    await page.selectOption("#newds select[name=type]", "kafka");
    await page.fill("#newds textarea[name=props]", "bootstrap.servers=" + cfg.servers);
    await page.click("#newds button.primary");
    await flashed(true, "data source created");
    await page.locator(`[data-test="${cfg.datasource}"]`).waitFor({ timeout: STEP_MS });
  });

  await step("datasource-tested", async () => {
    await page.click(`[data-test="${cfg.datasource}"]`);
    out.test_message = await until("the test's answer", () => {
      const m = document.querySelector("#flash .msg");
      return m && /^(ok|failed): /.test(m.textContent) && m.textContent;
    });
  });

  await step("topic-browsed", async () => {
    await page.click(`#main a[href="#/datasources/${encodeURIComponent(cfg.datasource)}"]`);
    await until("the namespaces", () => (document.querySelector("#browse th") || {}).textContent === "Namespace");
    out.namespaces = await page.$$eval("#browse tr td:first-child", (tds) => tds.map((td) => td.textContent));
    await page.click("#browse a");
    await until("the topics", () => (document.querySelector("#browse th") || {}).textContent === "Object");
    out.objects = await page.$$eval("#browse tr td:first-child", (tds) => tds.map((td) => td.textContent));
    await page.click(`#browse a:text-is("${cfg.topic}")`);
    await until("the topic's fields", () => (document.querySelector("#browse th") || {}).textContent === "Column");
    out.topic_paths = await page.$$eval("#browse tr", (trs) => trs.slice(1).map((tr) => tr.cells[4].textContent).filter(Boolean));
  });

  await step("task-created", async () => {
    await page.click("#nav-tasks");
    await page.locator("#create").waitFor({ timeout: STEP_MS });
    await page.fill("#create input[name=name]", cfg.task);
    await page.click("#create button.primary");
    await until("the new task's page", (name) => document.getElementById("cfg") && document.getElementById("t-head").textContent.includes(name), cfg.task);
    out.created_head = await text("#t-head");
  });

  await step("task-configured", async () => {
    await page.selectOption("#cfg select[name=source]", cfg.datasource);
    await page.fill("#cfg input[name=source_table]", cfg.topic);
    await page.fill("#cfg input[name=sink_table]", cfg.table);
    await page.click("#suggest");
    await until("the suggested columns", () => document.querySelectorAll("#cols tr").length > 1);
    out.suggested = await page.$$eval("#cols tr", (trs) =>
      trs.slice(1).map((tr) => tr.querySelector(".cn").value + "=" + tr.querySelector(".ce").value + ":" + tr.querySelector(".ct").value),
    );
    await page.click("#cfg button.primary");
    await flashed(true, "draft saved");
  });

  await step("previewed", async () => {
    await page.click("#preview");
    await page.locator("#previewed table").waitFor({ timeout: STEP_MS });
    out.preview_headers = await page.$$eval("#previewed table th", (ths) => ths.map((th) => th.textContent));
    out.preview_first = await page.$$eval("#previewed table tr:nth-child(2) td", (tds) => tds.map((td) => td.textContent));
    out.preview_rows = (await page.locator("#previewed table tr").count()) - 1;
    // The status refreshes on its own: an edit in progress must survive it.
    await page.fill("#cfg input[name=sink_schema]", "edited_not_saved");
    await refreshes(2);
    out.form_kept = (await page.inputValue("#cfg input[name=sink_schema]")) === "edited_not_saved";
    await page.fill("#cfg input[name=sink_schema]", "public");
  });

  await step("deployed", async () => {
    await page.click("#deploy");
    await flashed(true, "deployed as version 1");
    await rowsAbove("the first messages synced", cfg.initial - 1, DEPLOY_MS);
    out.deployed_head = await text("#t-head");
    out.deployed_status = await statusOf();
  });

  await step("charts-moving", async () => {
    // Messages keep arriving (the test produces them): the charts gain points and the
    // throughput line leaves zero.
    const before = { rate: await chartOf("c-rate"), rows: await rowsSynced() };
    await until("the throughput chart to show rows/s above zero", ([b]) => {
      const c = document.getElementById("c-rate");
      return Number(c.dataset.points || 0) >= b + 3 && JSON.parse(c.dataset.latest || "[0]")[0] > 0;
    }, [before.rate.points]);
    await until("a lag point", () => Number(document.getElementById("c-lag").dataset.points || 0) >= 2);
    out.charts = { before, rate: await chartOf("c-rate"), fresh: await chartOf("c-fresh"), lag: await chartOf("c-lag"), rows: await rowsSynced() };
    out.moving_status = await statusOf();
  });

  await step("stopped", async () => {
    await page.click("#stop");
    await until("the task stopped", () => (document.querySelector("#t-head .state") || {}).textContent === "stopped");
    out.stopped_head = await text("#t-head");
    out.rows_at_stop = await rowsSynced();
  });

  await step("started", async () => {
    await page.click("#start");
    await until("the task running again", () => (document.querySelector("#t-head .state") || {}).textContent === "running");
    await rowsAbove("rows synced after the restart", out.rows_at_stop, DEPLOY_MS);
    out.started_status = await statusOf();
    // The task's page shows its table's health too.
    await until("the task's table health", () => document.querySelector("#t-health table"));
    out.task_health_title = await text("#t-health h3");
    out.task_health = await page.locator("#t-health table tr").nth(1).locator("td").allInnerTexts();
    out.runs = await page.$$eval("#t-runs tr", (trs) => trs.slice(1).map((tr) => [...tr.cells].slice(0, 3).map((td) => td.textContent)));
  });

  await step("logs", async () => {
    await page.click("[data-run]");
    await until("an attempt's log", () => {
      const pre = document.querySelector("#attempts pre.log");
      return pre && pre.textContent.trim().length > 0;
    });
    out.log_lines = (await text("#attempts pre.log")).split("\n").filter(Boolean);
  });

  await step("table-health", async () => {
    await page.click("#nav-datasources");
    await page.click('#main a[href="#/datasources/lakehouse"]');
    await page.click('#browse a[href="#/datasources/lakehouse/public"]');
    await page.click(`#browse a:text-is("${cfg.table}")`);
    await until("the table's health", () => document.querySelector("#health table") && document.querySelector("#health .optimize"));
    const health = page.locator("#health table");
    out.table_health = await health.locator("th").allInnerTexts();
    out.table_health_row = await health.locator("tr").nth(1).locator("td").allInnerTexts();
    out.table_columns = await page.locator("#browse table").first().locator("tr td:first-child").allInnerTexts();
  });

  await step("alerts", async () => {
    await page.click("#nav-alerts");
    await until("the alerts page", () => document.getElementById("newalert"));
    await page.fill("#newalert input[name=name]", "ui_lag");
    await page.selectOption("#newalert select[name=scope]", `task:${cfg.task}`);
    await page.fill("#newalert input[name=when]", "lag>1000000");
    await page.fill("#newalert input[name=for]", "1m");
    await page.click("#newalert button");
    await flashed(true, "alert rule ui_lag created");
    const ruleRow = () =>
      [...document.querySelectorAll("#main tr")].map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)).find((r) => r[0] === "ui_lag");
    await until("the new rule in the list", ruleRow);
    out.alert_rule = await page.evaluate(ruleRow);
    await page.click('button[data-test="ui_lag"]');
    await flashed(true, "test notification: no webhook");
    out.alert_sections = await page.locator("#main h3").allInnerTexts();
  });

  await browser.close();
  return out;
}

main().then(
  (o) => {
    emit(o);
    process.exit(0);
  },
  async (e) => {
    let page_text = "";
    try {
      page_text = (await page.locator("body").innerText()).slice(0, 4000);
      const file = path.join(cfg.artifacts, `failed-${current}.png`);
      await page.screenshot({ path: file, fullPage: true });
      out.screenshots.push(file);
    } catch (ignored) {}
    emit({ failed: String(e.message || e), step: current, page_text, ...out });
    process.exit(1);
  },
);
