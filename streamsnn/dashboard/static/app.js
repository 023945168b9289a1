// streamsnn dashboard: draws the snapshots the server pushes over /ws (plain DOM and canvas).
"use strict";

const LATENCY_NAMES = { input_latency_ms: "input", compute_latency_ms: "compute", e2e_latency_ms: "end-to-end" };
const HEALTH_NAMES = {
  dropped_slices: "dropped slices", skipped_slices: "skipped slices", late_events: "late events",
  out_of_bounds_events: "out-of-bounds events", gaps: "gaps (feed)", missed: "messages missed",
  lag_p50_ms: "lag p50 (ms)", lag_max_ms: "lag max (ms)", publisher_restarts: "publisher restarts",
  malformed: "malformed messages", newer_schema: "newer-schema messages", reconnects: "reconnects",
  streams_not_shown: "streams not shown",
};
const SUMMARY_KEYS = [
  "pipeline", "source", "samples", "accuracy", "mean_steps", "wall_s", "samples_per_s",
  "dropped_slices", "late_events", "out_of_bounds_events", "interrupted",
];
const COLOURS = { input_latency_ms: "#5fd3ff", compute_latency_ms: "#ffcb6b", e2e_latency_ms: "#c792ea" };
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);  // feed text into HTML
const fmt = (v, digits = 2) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));

let socket = null;
let latest = null;

function connect() {
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + location.pathname.replace(/[^/]*$/, "") + "ws";
  socket = new WebSocket(url);
  socket.onmessage = (event) => { latest = JSON.parse(event.data); requestAnimationFrame(draw); };
  socket.onclose = () => { setStatus("lost", "server lost: reconnecting"); setTimeout(connect, 1000); };
}

function setStatus(kind, text) {
  const el = $("status");
  el.className = "status " + kind;
  el.textContent = text;
}

function draw() {
  const snap = latest;
  if (!snap) return;
  $("address").textContent = snap.address;
  $("publisher").textContent = snap.publisher || "—";
  $("threshold").textContent = snap.threshold === null ? "—" : snap.threshold;
  $("counts").textContent = `${snap.predictions} predictions, ${snap.frames} frames received`;
  const quiet = snap.last_message === null ? null : snap.now - snap.last_message;
  if (snap.summary) setStatus("ended", "run ended");
  else if (quiet === null) setStatus("waiting", "waiting for a publisher");
  else if (quiet > 3) setStatus("waiting", `no message for ${quiet.toFixed(0)} s`);
  else setStatus("live", "live");
  drawLatency(snap.latency);
  drawHealth(snap.health);
  const names = Object.keys(snap.streams);
  $("no-streams").classList.toggle("hidden", names.length > 0);
  for (const name of names) drawStream(name, snap.streams[name], snap.threshold);
  drawSummary(snap.summary);
}

function drawLatency(latency) {
  const box = $("latency");
  let n = 0;
  for (const [key, label] of Object.entries(LATENCY_NAMES)) {
    let el = document.getElementById("lat-" + key);
    if (!el) {
      el = document.createElement("div");
      el.className = "lat";
      el.id = "lat-" + key;
      el.innerHTML = `<h3>${label}</h3><div class="figures">p50 <span class="p50">—</span> · p99 <span class="p99">—</span> ms</div><canvas></canvas>`;
      box.appendChild(el);
    }
    const d = latency[key];
    n = Math.max(n, d.n);
    el.querySelector(".p50").textContent = fmt(d.p50, d.p50 >= 100 ? 0 : 1);
    el.querySelector(".p99").textContent = fmt(d.p99, d.p99 >= 100 ? 0 : 1);
    histogram(el.querySelector("canvas"), d, COLOURS[key]);
  }
  $("lat-n").textContent = n;
}

function fit(canvas) {
  // the drawing buffer at the canvas's size on the page (text stays sharp, not stretched)
  const w = Math.round(canvas.clientWidth), h = Math.round(canvas.clientHeight);
  if (w && h && (canvas.width !== w || canvas.height !== h)) { canvas.width = w; canvas.height = h; }
}

function histogram(canvas, d, colour) {
  fit(canvas);
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  g.clearRect(0, 0, w, h);
  if (!d.bins.length) return;
  const top = Math.max(...d.bins);
  const bw = w / d.bins.length;
  g.fillStyle = colour;
  d.bins.forEach((count, i) => {
    const bh = count ? Math.max(1, (count / top) * (h - 12)) : 0;
    g.fillRect(i * bw + 1, h - 12 - bh, bw - 2, bh);
  });
  g.fillStyle = "#8691a1";
  g.font = "10px system-ui";
  g.fillText("0", 0, h - 1);
  const end = `${fmt(d.max, 1)} ms`;
  g.fillText(end, w - g.measureText(end).width, h - 1);
}

function drawHealth(health) {
  const dl = $("health");
  const rows = [];
  for (const [key, label] of Object.entries(HEALTH_NAMES)) {
    if (!(key in health)) continue;
    const v = health[key];
    const text = key.endsWith("_ms") ? fmt(v, 1) : String(v ?? "—");
    const warn = !key.endsWith("_ms") && v > 0;
    rows.push(`<dt>${label}</dt><dd id="health-${key}" class="${warn ? "warn" : ""}">${esc(text)}</dd>`);
  }
  dl.innerHTML = rows.join("");
}

function streamCard(name) {
  let card = document.querySelector(`section.stream[data-stream="${CSS.escape(name)}"]`);
  if (card) return card;
  card = document.createElement("section");
  card.className = "stream";
  card.dataset.stream = name;
  card.innerHTML = `
    <h2></h2>
    <div class="row">
      <div><canvas class="events" width="192" height="192"></canvas>
        <div class="legend"><span class="on">■ ON</span> <span class="off">■ OFF</span> events, latest slices <span class="frame-info"></span></div></div>
      <div>
        <div class="now"><span class="cls">—</span><span class="conf"></span><span class="state"></span></div>
        <canvas class="trace"></canvas>
      </div>
    </div>
    <div class="tally"></div>
    <div class="finals"><table><thead><tr><th>#</th><th>class</th><th>confidence</th><th>steps</th><th>reason</th><th>label</th><th></th></tr></thead><tbody></tbody></table></div>`;
  card.querySelector("h2").textContent = name;
  $("streams").appendChild(card);
  return card;
}

function drawStream(name, s, threshold) {
  const card = streamCard(name);
  const p = s.latest;
  if (p) {
    card.querySelector(".cls").textContent = p.class;
    card.querySelector(".conf").textContent = (100 * p.confidence).toFixed(1) + " %";
    const st = card.querySelector(".state");
    st.textContent = p.final ? `final at step ${p.step} (${p.reason})` : `step ${p.step}, deciding #${p.sample}`;
    st.className = "state" + (p.final ? " final" : "");
  }
  drawFrame(card, s.frame);
  drawTrace(card.querySelector("canvas.trace"), s, threshold);
  const labelled = s.labelled ? ` · ${s.right} of ${s.labelled} labelled right (${(100 * s.right / s.labelled).toFixed(1)} %)` : "";
  card.querySelector(".tally").textContent = `${s.decisions} decisions${labelled}`;
  const rows = s.finals.map((f) => {
    const mark = f.correct === null ? "" : f.correct ? "✓" : "✗";
    const cls = f.correct === null ? "" : f.correct ? "right" : "wrong";
    return `<tr class="final" data-stream="${esc(name)}" data-decision="${f.sample}"><td>${f.sample}</td>` +
      `<td class="class">${f.class}</td><td class="confidence">${f.confidence.toFixed(3)}</td><td>${f.steps}</td>` +
      `<td>${esc(f.reason ?? "")}</td><td>${f.label ?? "—"}</td><td class="${cls}">${mark}</td></tr>`;
  });
  card.querySelector("tbody").innerHTML = rows.join("");
}

function drawFrame(card, frame) {
  const canvas = card.querySelector("canvas.events");
  if (!frame) return;
  const on = Uint8Array.from(atob(frame.on), (c) => c.charCodeAt(0));
  const off = Uint8Array.from(atob(frame.off), (c) => c.charCodeAt(0));
  let top = 1;
  for (let i = 0; i < on.length; i++) top = Math.max(top, on[i], off[i]);
  const img = new ImageData(frame.width, frame.height);
  for (let i = 0; i < on.length; i++) {
    const a = Math.sqrt(on[i] / top), b = Math.sqrt(off[i] / top);
    img.data[4 * i] = Math.min(255, 255 * b + 95 * a);
    img.data[4 * i + 1] = Math.min(255, 107 * b + 211 * a);
    img.data[4 * i + 2] = Math.min(255, 139 * b + 255 * a);
    img.data[4 * i + 3] = 255;
  }
  const small = document.createElement("canvas");
  small.width = frame.width;
  small.height = frame.height;
  small.getContext("2d").putImageData(img, 0, 0);
  const g = canvas.getContext("2d");
  g.imageSmoothingEnabled = false;
  g.fillStyle = "#000";
  g.fillRect(0, 0, canvas.width, canvas.height);
  const k = Math.min(canvas.width / frame.width, canvas.height / frame.height);
  const w = frame.width * k, h = frame.height * k;
  g.drawImage(small, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  card.querySelector(".frame-info").textContent = `(${frame.events} in ${((frame.t_end_us - frame.t_start_us) / 1000).toFixed(0)} ms)`;
}

function drawTrace(canvas, s, threshold) {
  fit(canvas);
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, left = 30, bottom = 16;
  g.clearRect(0, 0, w, h);
  const decided = s.decided ? s.decided.trace : [];
  const running = s.trace;
  const n = Math.max(10, decided.length, running.length);
  const x = (i) => left + (i / (n - 1)) * (w - left - 6);
  const y = (c) => 4 + (1 - c) * (h - bottom - 4);
  g.strokeStyle = "#2c3542";
  g.fillStyle = "#8691a1";
  g.font = "11px system-ui";
  for (const c of [0, 0.5, 1]) {
    g.beginPath(); g.moveTo(left, y(c)); g.lineTo(w, y(c)); g.stroke();
    g.fillText(c.toFixed(1), 4, y(c) + 3);
  }
  g.fillText("confidence after every step of the decision →", left, h - 3);
  if (threshold !== null) {
    g.setLineDash([5, 4]);
    g.strokeStyle = "#ffcb6b";
    g.beginPath(); g.moveTo(left, y(threshold)); g.lineTo(w, y(threshold)); g.stroke();
    g.setLineDash([]);
    g.fillStyle = "#ffcb6b";
    g.fillText(`threshold ${threshold}`, w - 80, y(threshold) - 3);
  }
  const line = (points, colour, width) => {
    if (!points.length) return;
    g.strokeStyle = colour; g.lineWidth = width;
    g.beginPath();
    points.forEach((p, i) => (i ? g.lineTo(x(i), y(p[1])) : g.moveTo(x(i), y(p[1]))));
    g.stroke(); g.lineWidth = 1;
  };
  line(decided, "#7bd88f", 2);
  line(running, "#5fd3ff", 1.5);
  if (decided.length) {
    const i = decided.length - 1, p = decided[i];
    g.strokeStyle = "#7bd88f";
    g.beginPath(); g.moveTo(x(i), 4); g.lineTo(x(i), h - bottom); g.stroke();
    g.fillStyle = "#7bd88f";
    g.beginPath(); g.arc(x(i), y(p[1]), 4, 0, 2 * Math.PI); g.fill();
    const text = `#${s.decided.sample}: class ${p[2]}, exit at step ${s.decided.exit_step}`;
    g.fillText(text, Math.min(x(i) + 6, w - g.measureText(text).width - 2), h - bottom - 4);
  }
}

function drawSummary(summary) {
  $("summary-panel").classList.toggle("hidden", !summary);
  if (!summary) return;
  const rows = [];
  for (const key of SUMMARY_KEYS) {
    if (!(key in summary) || summary[key] === null || typeof summary[key] === "object") continue;
    const v = summary[key];
    rows.push(`<dt>${key.replaceAll("_", " ")}</dt><dd>${typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : esc(v)}</dd>`);
  }
  $("summary").innerHTML = rows.join("");
}

connect();
