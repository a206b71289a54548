// Drives the daemon's web UI in jsdom, as a browser would: loads /ui/, follows its pages and
// clicks its buttons, and prints what a user would see as one JSON object on stdout.
// Usage: node ui_check.js BASE_URL TASK DATASOURCE NAMESPACE TOPIC
// (TASK already runs; a second task is then created, configured and deployed through the UI
// alone, syncing TOPIC of DATASOURCE into the table ui_made.)
"use strict";
const { JSDOM, VirtualConsole } = require("jsdom");

const [base, task, datasource, namespace, topic] = process.argv.slice(2);
const errors = [];

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

async function waitFor(what, fn, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    let v;
    try {
      v = fn();
    } catch (e) {
      v = null;
    }
    if (v) return v;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await sleep(100);
  }
}

async function main() {
  const html = await (await fetch(base + "/ui/")).text();
  const virtualConsole = new VirtualConsole();
  virtualConsole.on("jsdomError", (e) => errors.push(String(e.message || e)));
  virtualConsole.on("error", (e) => errors.push(String(e)));
  const dom = new JSDOM(html, {
    url: base + "/ui/#/tasks",
    runScripts: "dangerously",
    pretendToBeVisual: true,
    virtualConsole,
    beforeParse(window) {
      window.fetch = (url, opts) => fetch(new URL(url, base), opts);
      // jsdom has no canvas: a 2D context that draws nothing.
      window.HTMLCanvasElement.prototype.getContext = () =>
        new Proxy({}, { get: () => () => {}, set: () => true });
      window.confirm = () => true;
      window.prompt = () => "";
    },
  });
  const { window } = dom;
  const doc = window.document;
  const main = () => doc.getElementById("main");
  const out = {};

  await waitFor("the task list", () => main().textContent.includes(task));
  const row = [...main().querySelectorAll("tr")].find((tr) => tr.textContent.includes(task));
  out.task_row = row.textContent.replace(/\s+/g, " ").trim();

  window.location.hash = "#/tasks/" + encodeURIComponent(task);
  await waitFor("the task page", () => doc.getElementById("t-status") && doc.getElementById("t-status").textContent.includes("Rows synced"));
  out.status = [...doc.querySelectorAll("#t-status .kv")].reduce((acc, kv) => {
    acc[kv.querySelector("span").textContent] = kv.querySelector("div").textContent;
    return acc;
  }, {});
  out.columns = [...doc.querySelectorAll("#cols tr")].slice(1).map((tr) => ({
    name: tr.querySelector(".cn").value,
    expr: tr.querySelector(".ce").value,
    type: tr.querySelector(".ct").value,
  }));

  doc.getElementById("preview").click();
  await waitFor("the preview", () => doc.getElementById("previewed").querySelector("table"));
  const previewTable = doc.getElementById("previewed").querySelector("table");
  out.preview_headers = [...previewTable.querySelectorAll("th")].map((th) => th.textContent);
  out.preview_rows = previewTable.querySelectorAll("tr").length - 1;

  await waitFor("a run", () => doc.querySelector("[data-run]"));
  doc.querySelector("[data-run]").click();
  await waitFor("the attempt log", () => doc.querySelector("#attempts pre.log") && doc.querySelector("#attempts pre.log").textContent.length > 0);
  out.log_lines = doc.querySelector("#attempts pre.log").textContent.split("\n").length;

  // A second refresh keeps the edited form (the status refreshes on its own).
  const sinkTable = doc.querySelector("input[name=sink_table]");
  sinkTable.value = "edited_but_not_saved";
  await sleep(2500);
  out.form_kept = doc.querySelector("input[name=sink_table]").value === "edited_but_not_saved";

  window.location.hash = "#/datasources/" + encodeURIComponent(datasource);
  const browsed = (header) => () => {
    const th = doc.querySelector("#browse table th");
    return th && th.textContent === header;
  };
  await waitFor("the namespaces", browsed("Namespace"));
  out.namespaces = [...doc.querySelectorAll("#browse tr")].slice(1).map((tr) => tr.cells[0].textContent);

  window.location.hash = "#/datasources/" + encodeURIComponent(datasource) + "/" + encodeURIComponent(namespace);
  await waitFor("the objects", browsed("Object"));
  out.objects = [...doc.querySelectorAll("#browse tr")].slice(1).map((tr) => tr.cells[0].textContent);

  window.location.hash = "#/vclusters";
  await waitFor("the vclusters", () => main().textContent.includes("Virtual clusters") && main().querySelector("table"));
  out.vclusters = [...main().querySelectorAll("tr")].slice(1).map((tr) => tr.cells[0].textContent + ":" + tr.cells[1].textContent);

  // A second task, made with the UI alone: create, configure with suggested JSONPath
  // columns, save, deploy, and watch it sync.
  window.location.hash = "#/tasks";
  await waitFor("the create form", () => doc.getElementById("create"));
  doc.querySelector("#create input[name=name]").value = "ui_made";
  doc.querySelector("#create button").click();
  await waitFor("the new task's page", () => doc.getElementById("cfg") && doc.getElementById("t-head").textContent.includes("ui_made"));
  const field = (name) => doc.querySelector(`#cfg [name=${name}]`);
  field("source").value = datasource;
  field("source_table").value = topic;
  field("sink_table").value = "ui_made";
  doc.getElementById("suggest").click();
  await waitFor("suggested columns", () => doc.querySelectorAll("#cols tr").length > 1);
  out.suggested = [...doc.querySelectorAll("#cols tr")].slice(1).map((tr) => tr.querySelector(".cn").value + "=" + tr.querySelector(".ce").value + ":" + tr.querySelector(".ct").value);
  doc.querySelector("#cfg button.primary").click();
  await waitFor("the draft saved", () => main().textContent.includes("draft saved"));
  doc.getElementById("deploy").click();
  await waitFor("the deploy message", () => main().textContent.includes("deployed as version 1"));
  await waitFor("40 rows synced by the new task", () => {
    const kv = [...doc.querySelectorAll("#t-status .kv")].find((k) => k.querySelector("span").textContent === "Rows synced");
    return kv && kv.querySelector("div").textContent === "40";
  }, 60000);
  out.made_status = doc.getElementById("t-head").textContent;

  // Its table in the lakehouse: columns and the table's health, with the maintenance buttons.
  window.location.hash = "#/datasources/lakehouse/public/ui_made";
  await waitFor("the table's health", () => main().textContent.includes("Table health") && doc.getElementById("optimize"));
  const health = [...doc.querySelectorAll("#browse table")].pop();
  out.table_health = [...health.querySelectorAll("th")].map((th) => th.textContent);
  out.table_files = Number(health.querySelectorAll("tr")[1].cells[1].textContent.replace(/,/g, ""));

  out.errors = errors;
  window.close();
  return out;
}

main().then(
  (out) => {
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(0);
  },
  (e) => {
    process.stdout.write(JSON.stringify({ failed: String(e.message || e), errors }) + "\n");
    process.exit(1);
  },
);
