// The wasp dashboard: reads /api/stats and /plugins every second and turns successive counter
// readings into rates. Nothing here talks to any other origin; the admin token typed into the
// page is sent with a reload and kept nowhere else.
"use strict";

const POLL_MS = 1000;
const HISTORY = 60; // samples kept for each graph

let previous = null; // the last /api/stats answer
const series = new Map(); // graph name -> recent values

function push(name, value) {
  let s = series.get(name);
  if (!s) {
    s = [];
    series.set(name, s);
  }
  s.push(value);
  if (s.length > HISTORY) s.shift();
  return s;
}

function spark(values, kind) {
  const w = 120, h = 26;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark" + (kind ? " " + kind : ""));
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const max = Math.max(1, ...values) * 1.2;
  // Spread over the width until the history is full; then it scrolls.
  const step = w / Math.max(1, values.length - 1);
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 1 - (v / max) * (h - 2)).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.appendChild(line);
  return svg;
}

function draw(target, values, kind) {
  if (!target) return;
  target.replaceChildren(spark(values, kind));
}

function fmt(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  if (n >= 100 || Number.isInteger(n)) return String(Math.round(n));
  return n.toFixed(1);
}

function text(el, value) {
  if (el && el.textContent !== value) el.textContent = value;
}

// The node names of the drawing, in its order: the steps table follows it.
function drawnNodes() {
  return Array.from(document.querySelectorAll("#topology g.node[data-node]"));
}

// The sources of the application's input topics (not of its repartition topics).
function sourceNames() {
  return new Set(drawnNodes()
    .filter((g) => g.dataset.op === "source" && !g.classList.contains("internal"))
    .map((g) => g.dataset.node));
}

function stepRow(step) {
  const tr = document.createElement("tr");
  tr.dataset.step = step.step;
  const cells = [
    ["step", step.step], ["", step.pipeline], ["num in-rate", "–"], ["graph in-graph", ""],
    ["num out-rate", "–"], ["num in-total", "0"], ["num out-total", "0"], ["num errors", "0"], ["num late", "0"],
  ];
  for (const [cls, value] of cells) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    td.textContent = value;
    tr.appendChild(td);
  }
  return tr;
}

function rowFor(step) {
  const body = document.querySelector("#steps tbody");
  for (const tr of body.rows) if (tr.dataset.step === step.step) return tr;
  const tr = stepRow(step);
  // Keep the drawing's order; steps it does not show go last.
  const order = drawnNodes().map((g) => g.dataset.node);
  const at = order.indexOf(step.step);
  const next = Array.from(body.rows).find((r) => {
    const i = order.indexOf(r.dataset.step);
    return at >= 0 && (i < 0 || i > at);
  });
  body.insertBefore(tr, next || null);
  return tr;
}

// A badge over each drawn step with its records per second; a red border while it fails.
function badge(step, rate, failing) {
  const g = Array.from(document.querySelectorAll("#topology g.node[data-node]")).find((n) => n.dataset.node === step);
  if (!g) return;
  let t = g.querySelector("text.live-rate");
  if (!t) {
    const rect = g.querySelector("rect");
    t = document.createElementNS("http://www.w3.org/2000/svg", "text");
    t.setAttribute("class", "live-rate");
    t.setAttribute("text-anchor", "end");
    t.setAttribute("x", Number(rect.getAttribute("x")) + Number(rect.getAttribute("width")));
    t.setAttribute("y", Number(rect.getAttribute("y")) - 3);
    g.appendChild(t);
  }
  text(t, rate === null ? "" : fmt(rate) + "/s");
  g.classList.toggle("failing", failing);
}

function rate(now, before, dt) {
  return before === undefined || dt <= 0 ? null : Math.max(0, now - before) / dt;
}

function showStats(stats) {
  const dt = previous ? (stats.time_ms - previous.time_ms) / 1000 : 0;
  const before = new Map(previous ? previous.steps.map((s) => [s.step, s]) : []);
  const sources = sourceNames();
  let read = 0, errors = 0, late = 0, readBefore = 0, errorsBefore = 0, lateBefore = 0;
  for (const s of stats.steps) {
    const b = before.get(s.step);
    const inRate = rate(s.records_in, b && b.records_in, dt);
    const outRate = rate(s.records_out, b && b.records_out, dt);
    const tr = rowFor(s);
    text(tr.querySelector(".in-rate"), fmt(inRate));
    text(tr.querySelector(".out-rate"), fmt(outRate));
    text(tr.querySelector(".in-total"), String(s.records_in));
    text(tr.querySelector(".out-total"), String(s.records_out));
    text(tr.querySelector(".errors"), String(s.errors));
    text(tr.querySelector(".late"), String(s.late));
    if (inRate !== null) draw(tr.querySelector(".in-graph"), push("step:" + s.step, inRate));
    const newErrors = b ? s.errors - b.errors : 0;
    badge(s.step, inRate, newErrors > 0);
    if (sources.size === 0 || sources.has(s.step)) {
      read += s.records_in;
      readBefore += b ? b.records_in : s.records_in;
    }
    errors += s.errors;
    late += s.late;
    errorsBefore += b ? b.errors : s.errors;
    lateBefore += b ? b.late : s.late;
  }
  text(document.getElementById("read-total"), String(read));
  text(document.getElementById("error-total"), String(errors));
  text(document.getElementById("late-total"), String(late));
  if (previous) {
    const r = rate(read, readBefore, dt), e = rate(errors, errorsBefore, dt), l = rate(late, lateBefore, dt);
    text(document.getElementById("read-rate"), fmt(r));
    text(document.getElementById("error-rate"), fmt(e));
    text(document.getElementById("late-rate"), fmt(l));
    draw(document.getElementById("read-graph"), push("read", r));
    draw(document.getElementById("error-graph"), push("errors", e), "bad");
    draw(document.getElementById("late-graph"), push("late", l), "bad");
  }
  showLag(stats.lag);
  previous = stats;
}

function showLag(lag) {
  const body = document.querySelector("#lag tbody");
  document.getElementById("lag-empty").hidden = lag.length > 0;
  let total = 0;
  for (const p of lag) {
    total += p.lag;
    const key = p.topic + "/" + p.partition;
    let tr = Array.from(body.rows).find((r) => r.dataset.key === key);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.key = key;
      for (const [cls, value] of [["", p.topic], ["num", String(p.partition)], ["num value", ""], ["graph", ""]]) {
        const td = document.createElement("td");
        if (cls) td.className = cls;
        td.textContent = value;
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    text(tr.querySelector(".value"), String(p.lag));
    draw(tr.querySelector(".graph"), push("lag:" + key, p.lag), "lag");
  }
  if (lag.length > 0) {
    text(document.getElementById("lag-total"), fmt(total));
    draw(document.getElementById("lag-graph"), push("lag", total), "lag");
  }
}

function cell(tr, cls, value, title) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = value;
  if (title) td.title = title;
  tr.appendChild(td);
  return td;
}

function when(ms) {
  return new Date(ms).toLocaleString();
}

function showPlugins(plugins) {
  const body = document.querySelector("#plugins tbody");
  const events = [];
  for (const p of plugins) {
    let tr = Array.from(body.rows).find((r) => r.dataset.plugin === p.name);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.plugin = p.name;
      cell(tr, "plugin", p.name);
      for (const cls of ["digest", "generation num", "swaps num", "kinds", "path"]) cell(tr, cls, "");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "reload";
      button.dataset.plugin = p.name;
      button.textContent = "reload";
      cell(tr, "", "").appendChild(button);
      body.appendChild(tr);
    }
    const digest = tr.querySelector(".digest");
    text(digest, p.digest.slice(0, 12));
    digest.title = p.digest;
    text(tr.querySelector(".generation"), String(p.generation));
    text(tr.querySelector(".swaps"), String(p.swaps));
    text(tr.querySelector(".kinds"), p.kinds.join(", "));
    const path = tr.querySelector(".path");
    text(path, p.path.split("/").pop());
    path.title = p.path;
    // The version the drawing shows follows swaps.
    for (const v of document.querySelectorAll("#topology tspan.version")) {
      if (v.dataset.plugin === p.name) text(v, "@" + p.digest.slice(0, 12));
    }
    for (const e of p.history || []) events.push([p.name, e]);
  }
  events.sort((a, b) => b[1].at_ms - a[1].at_ms || a[0].localeCompare(b[0]));
  const rows = events.map(([name, e]) => {
    const tr = document.createElement("tr");
    cell(tr, "time", when(e.at_ms));
    cell(tr, "", name);
    cell(tr, "result " + e.result, e.result);
    cell(tr, "digest", e.digest.slice(0, 12), e.digest);
    cell(tr, "", e.reason || "");
    return tr;
  });
  document.querySelector("#history tbody").replaceChildren(...rows);
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

let ticks = 0;
async function poll() {
  const status = document.getElementById("status");
  try {
    showStats(await getJson("/api/stats"));
    if (ticks % 3 === 0) showPlugins(await getJson("/plugins"));
    ticks += 1;
    text(status, "live, updated " + new Date().toLocaleTimeString());
  } catch (e) {
    text(status, "cannot reach the endpoint: " + e.message);
  }
  setTimeout(poll, POLL_MS);
}

async function reload(name) {
  const message = document.getElementById("reload-message");
  const token = document.getElementById("token").value;
  if (!token) {
    message.className = "error";
    text(message, "type the admin token first");
    return;
  }
  text(message, `reloading ${name}…`);
  message.className = "";
  try {
    const r = await fetch(`/plugins/${encodeURIComponent(name)}/reload`, {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: "{}",
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok) {
      message.className = "ok";
      text(message, `${name}: ${body.result} (${(body.digest || "").slice(0, 12)})`);
    } else {
      message.className = "error";
      text(message, `${name}: refused (${r.status}): ${body.error || ""}`);
    }
    showPlugins(await getJson("/plugins"));
  } catch (e) {
    message.className = "error";
    text(message, `${name}: ${e.message}`);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const td of document.querySelectorAll("#history td.time[data-ms]")) td.textContent = when(Number(td.dataset.ms));
  document.getElementById("plugins").addEventListener("click", (e) => {
    const button = e.target.closest("button.reload");
    if (button) reload(button.dataset.plugin);
  });
  poll();
});
