// The /ops page: charts of the SLIs from Prometheus (through the operations server's API),
// the alerts Alertmanager has active, its recent notifications, panic state and targets.
// uPlot is the chart library (npm package "uplot", served from node_modules).
import uPlot from "/ops/vendor/uPlot.esm.js";

const REFRESH_MS = 5000;
const MINUTES = new URLSearchParams(location.search).get("minutes") || "15";
const COLOURS = ["#1565c0", "#c62828", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037",
                 "#ad1457", "#455a64", "#9e9d24"];
const charts = new Map();  // panel id -> {panel, el, plot, names}
const state = { points: {} };  // panel id -> number of non-null points (for tests)
window.stumpcastOps = state;

async function getJSON(url) {
  const resp = await fetch(url);
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.message || resp.statusText);
  return body;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatter(unit) {
  if (unit === "s") return (v) => v == null ? "" : v < 1 ? `${(v * 1000).toFixed(0)} ms` : `${v.toFixed(1)} s`;
  if (unit === "ratio") return (v) => v == null ? "" : `${(v * 100).toFixed(1)}%`;
  if (unit === "x") return (v) => v == null ? "" : `${v.toFixed(1)}\u00d7`;
  if (unit === "1/s") return (v) => v == null ? "" : `${v.toFixed(2)}/s`;
  return (v) => v == null ? "" : `${Math.round(v * 100) / 100}`;
}

function makeChart(panel) {
  const box = el("div", "chart");
  box.dataset.panel = panel.id;
  box.append(el("h3", "", panel.title), el("p", "help", panel.help));
  const body = el("div", "body");
  box.append(body);
  document.getElementById("charts").append(box);
  charts.set(panel.id, { panel, body, plot: null, names: "" });
}

function draw(entry, data) {
  const { panel, body } = entry;
  const live = data.series.filter((s) => s.values.some((v) => v !== null));
  state.points[panel.id] = live.reduce((n, s) => n + s.values.filter((v) => v !== null).length, 0);
  if (live.length === 0) {
    entry.plot?.destroy();
    entry.plot = null;
    entry.names = "";
    body.replaceChildren(el("div", "empty", "no data in the last " + MINUTES + " min"));
    return;
  }
  const names = live.map((s) => s.name).join("\u0000");
  const columns = [data.x, ...live.map((s) => s.values)];
  if (entry.plot && entry.names === names) {
    entry.plot.setData(columns);
    return;
  }
  entry.plot?.destroy();
  body.replaceChildren();
  const fmt = formatter(panel.unit);
  entry.names = names;
  entry.plot = new uPlot({
    width: Math.max(400, body.clientWidth || 440), height: 190,
    series: [{}, ...live.map((s, i) => ({ label: s.name || panel.title, stroke: COLOURS[i % COLOURS.length],
                                          width: 1.5, value: (u, v) => fmt(v) }))],
    axes: [{}, { values: (u, vals) => vals.map(fmt), size: 70 }],
    // from 0, and a visible range when every value is 0
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
  }, columns, body);
}

async function refreshCharts() {
  await Promise.all([...charts.values()].map(async (entry) => {
    try {
      draw(entry, await getJSON(`/ops/api/panel/${entry.panel.id}?minutes=${MINUTES}`));
    } catch (err) {
      entry.plot?.destroy();
      entry.plot = null;
      entry.names = "";
      entry.body.replaceChildren(el("div", "empty", `unavailable: ${err.message}`));
    }
  }));
}

function listAlerts(target, rows, describe) {
  const list = document.getElementById(target);
  list.replaceChildren(...(rows.length ? rows.map(describe) : [el("li", "muted", "none")]));
}

async function refreshAlerts() {
  try {
    const alerts = await getJSON("/ops/api/alerts");
    listAlerts("alerts", alerts, (a) => {
      const li = el("li", a.labels.severity || "");
      const where = a.labels.match || a.labels.group || a.labels.job || "";
      li.append(el("div", "name", `${a.name}${where ? " · " + where : ""}`),
                el("div", "", a.summary), el("div", "muted", `since ${new Date(a.startsAt).toLocaleTimeString()}`));
      return li;
    });
  } catch (err) {
    listAlerts("alerts", [err.message], (m) => el("li", "muted", `Alertmanager unavailable: ${m}`));
  }
  const notes = await getJSON("/ops/api/notifications").catch(() => []);
  listAlerts("notifications", notes.slice(0, 10), (n) => {
    const li = el("li", n.status);
    li.append(el("div", "name", `${n.status}: ${n.name}`), el("div", "", n.summary),
              el("div", "muted", new Date(n.received * 1000).toLocaleTimeString()));
    return li;
  });
}

// The level in force and its last change: who, when, why (an operator's pin says so).
function showDegradation(d) {
  const badge = document.getElementById("degradation");
  if (!d || d.level === null || d.level === undefined) {
    badge.className = "badge unknown";
    badge.textContent = `degradation: ? ${d && d.error ? d.error : ""}`;
    document.getElementById("degradation-why").textContent = "";
    return;
  }
  badge.className = "badge " + (d.level === 0 ? "ok" : "bad");
  const pin = d.pinned ? " (pinned)" : "";
  const when = d.when_ms ? new Date(d.when_ms).toISOString().slice(11, 19) + "Z" : "";
  badge.textContent = `degradation: level ${d.level}${pin}` + (d.who ? `, ${when} by ${d.who}` : "");
  document.getElementById("degradation-why").textContent =
    d.why ? `why: ${d.why}` : "no level change recorded";
}

async function refreshState() {
  const panic = document.getElementById("panic");
  const targets = document.getElementById("targets");
  try {
    const s = await getJSON("/ops/api/state");
    panic.className = "badge " + (s.panic === null ? "unknown" : s.panic ? "bad" : "ok");
    panic.textContent = s.panic === null ? "panic: no gateway" : s.panic ? "PANIC: serving stored scorecards" : "panic: off";
    targets.replaceChildren(...Object.entries(s.targets).sort().map(([job, up]) =>
      el("span", up ? "up" : "down", `${job} ${up ? "up" : "DOWN"}`)));
    showDegradation(s.degradation);
  } catch (err) {
    panic.className = "badge unknown";
    panic.textContent = "panic: ?";
    targets.replaceChildren(el("span", "down", `Prometheus unavailable: ${err.message}`));
  }
}

async function refresh() {
  await Promise.all([refreshCharts(), refreshAlerts(), refreshState()]);
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  state.refreshed = (state.refreshed || 0) + 1;
}

async function main() {
  const panels = await getJSON("/ops/api/panels");
  panels.forEach(makeChart);
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

main();
