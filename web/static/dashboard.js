// The dashboard subscribes to stats:server, where the server publishes a
// snapshot of cumulative counters each second, and derives the rates.
import { Hotline } from "/hotline.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
// The token comes in the fragment (/dashboard#token=JWT), which is never
// sent to the server; ?token= still works.
const token = new URLSearchParams(location.hash.slice(1)).get("token") || params.get("token") || "";
const h = new Hotline({ token, transport: params.get("transport") || "auto" });
window.hotline = h;

h.addEventListener("state", () => {
  $("state").textContent = h.state;
  $("state").dataset.state = h.state;
  $("transport").textContent = h.transport || "…";
});

let last = null;
const series = [];

function fmt(n) { return n >= 1000 ? (n / 1000).toFixed(1) + "k" : String(Math.round(n)); }

function draw() {
  const c = $("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...series);
  g.strokeStyle = "#d9480f";
  g.lineWidth = 2;
  g.beginPath();
  series.forEach((v, i) => {
    const x = (i / 119) * c.width, y = c.height - 4 - (v / max) * (c.height - 8);
    i ? g.lineTo(x, y) : g.moveTo(x, y);
  });
  g.stroke();
  g.fillStyle = "#6b6b70";
  g.fillText(`max ${fmt(max)}/s`, 4, 12);
}

h.subscribe("stats:server", {
  onPublication: (p) => {
    const s = p.data;
    const sessions = s.sessions || {};
    $("ws").textContent = sessions.websocket ?? 0;
    $("longpoll").textContent = sessions.longpoll ?? 0;
    $("poll").textContent = sessions.poll ?? 0;
    $("slow").textContent = s.slow_consumers ?? 0;
    const l = s.latency_ms || {};
    $("lat").textContent = l.count ? `${l.p50} / ${l.p99} ms` : "–";
    if (last) {
      const dt = Math.max(0.001, (s.time - last.time) / 1000);
      const out = (s.messages_out - last.messages_out) / dt;
      $("in").textContent = fmt((s.messages_in - last.messages_in) / dt);
      $("out").textContent = fmt(out);
      series.push(out);
      if (series.length > 120) series.shift();
      draw();
    }
    last = s;
    document.body.dataset.updated = String(s.time);
  },
  // Snapshots are cumulative: after lost ones, start the rates afresh
  // rather than spread a long interval over one point.
  onRecovery: (r) => { if (!r.recovered) last = null; },
  onError: (err) => {
    const why = err.code === 403
      ? "this token may not read the server's stats: its subscribe claim must name stats:server (or stats:*)"
      : err.message;
    $("error").textContent = `No stats: ${why}.`;
    $("error").hidden = false;
    document.body.dataset.error = String(err.code || "error");
  },
});
