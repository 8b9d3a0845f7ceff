// The chat page: rooms are channels chat:<room>; history on join, presence,
// join/leave, the transport in use, and a plain notice when history was lost.
import { Hotline } from "/hotline.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const h = new Hotline({
  token: pageToken(),
  transport: params.get("transport") || "auto",
  pollInterval: Number(params.get("interval")) || 1000,
  // For tests (and the curious): how soon a silent connection is probed.
  idleTimeout: Number(params.get("idle")) || undefined,
  requestTimeout: Number(params.get("timeout")) || undefined,
  // For tests: how soon a fallback tries WebSocket again.
  upgradeAfter: Number(params.get("upgrade")) || undefined,
});
window.hotline = h; // for the browser tests and the curious
window.recoveries = []; // every onRecovery report, for the same

// pageToken reads a token from the fragment (/#token=JWT), which the
// browser never sends to the server, so it stays out of access logs. A
// ?token= in the page's own URL still works, but that request has already
// carried it: the address bar drops it at once.
function pageToken() {
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("token")) return frag.get("token");
  const tok = params.get("token") || "";
  if (tok) {
    params.delete("token");
    history.replaceState(null, "", "?" + params + location.hash);
  }
  return tok;
}

const rooms = ["lobby", "random", "dev"];
let room = params.get("room") || "lobby";
let sub = null;
const people = new Map();

$("force").value = h.preference;
$("force").onchange = () => {
  params.set("transport", $("force").value);
  history.replaceState(null, "", "?" + params);
  h.setTransport($("force").value);
};

h.addEventListener("state", () => {
  $("state").textContent = h.state;
  $("state").dataset.state = h.state;
  $("transport").textContent = h.transport || "…";
  document.body.dataset.transport = h.transport;
  document.body.dataset.state = h.state;
  if (h.info) $("me").textContent = `you are ${h.info.name || h.info.user}`;
});

function renderRooms() {
  $("rooms").replaceChildren(...rooms.map((r) => {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = "?" + new URLSearchParams({ ...Object.fromEntries(params), room: r });
    a.textContent = "#" + r;
    if (r === room) a.className = "current";
    a.onclick = (e) => { e.preventDefault(); join(r); };
    li.append(a);
    return li;
  }));
}

function renderPeople() {
  $("people").replaceChildren(...[...people.values()].map((p) => {
    const li = document.createElement("li");
    li.textContent = p.name || p.user;
    if (p.conns > 1) li.title = `${p.conns} connections`;
    return li;
  }));
}

function line(kind, who, text) {
  const li = document.createElement("li");
  li.className = kind;
  if (who) {
    const b = document.createElement("b");
    b.textContent = who;
    li.append(b, " ");
  }
  li.append(text);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
}

function show(p) {
  const text = typeof p.data === "string" ? p.data : JSON.stringify(p.data);
  line("msg", p.info ? (p.info.name || p.info.user) : "server", text);
}

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

async function refreshPresence() {
  try {
    const res = await h.presence("chat:" + room);
    people.clear();
    for (const c of res.clients || []) people.set(c.user, c);
    renderPeople();
    if (res.truncated) {
      // The server caps presence replies; say how many there are.
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = `and ${res.total - people.size} more`;
      $("people").append(li);
    }
  } catch { /* presence is best effort */ }
}

async function join(r) {
  if (sub) sub.unsubscribe();
  room = r;
  if (!rooms.includes(r)) rooms.push(r);
  params.set("room", r);
  history.replaceState(null, "", "?" + params);
  renderRooms();
  $("messages").replaceChildren();
  notice("");
  delete document.body.dataset.historyLost;
  people.clear();
  renderPeople();
  const channel = "chat:" + r;
  let since = null;
  while (h.state !== "connected") await new Promise((res) => h.addEventListener("state", res, { once: true }));
  try {
    const hist = await h.history(channel, { limit: 50, reverse: true });
    for (const p of (hist.publications || []).reverse()) show(p);
    // Subscribe from exactly where the history ends, even for a room with
    // no stream yet ({"",0}): what is published in between is replayed,
    // not missed.
    since = { epoch: hist.epoch || "", offset: hist.offset || 0 };
  } catch (err) {
    line("sys", "", `history unavailable: ${err.message}`);
  }
  sub = h.subscribe(channel, {
    onPublication: show,
    onJoin: (u) => { line("sys", "", `${u.name || u.user} joined`); refreshPresence(); },
    onLeave: (u) => { line("sys", "", `${u.name || u.user} left`); refreshPresence(); },
    onRecovery: (r) => {
      window.recoveries.push(r);
      refreshPresence();
      if (r.first) return;
      if (r.recovered) {
        if (!r.replayed) return;
        if (r.cause === "reconnect") line("sys", "", `reconnected: ${r.replayed} missed message(s) recovered`);
        else if (r.cause !== "subscribe") line("sys", "", `${r.replayed} delayed message(s) recovered`);
        return;
      }
      // The notice stays until the room changes: the messages stay lost
      // even when the connection is fine again.
      const when = r.cause === "reconnect" ? "sent while you were away" : "sent in this room a moment ago";
      notice(`History was lost (${r.reason}): some messages ${when} cannot be shown. Reload to see the room as it is now.`);
      document.body.dataset.historyLost = "true";
      line("sys lost", "", `history lost: ${r.reason}`);
    },
    onError: (err) => line("sys err", "", `cannot join ${channel}: ${err.message}`),
  }, since);
}

$("send").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  $("text").value = "";
  try {
    await h.publish("chat:" + room, text);
  } catch (err) {
    line("sys err", "", `not sent: ${err.message}`);
    $("text").value = text;
  }
};

$("newroom").onsubmit = (e) => {
  e.preventDefault();
  const r = $("roomname").value.trim();
  if (r) join(r);
  $("roomname").value = "";
};

renderRooms();
join(room);
