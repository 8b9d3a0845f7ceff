// hotline.js: the browser client of a hotline server. A small ES module with
// no dependencies.
//
//   import { Hotline } from "/hotline.js";
//   const h = new Hotline({ token, transport: "auto" });
//   h.addEventListener("state", () => console.log(h.state, h.transport));
//   const sub = h.subscribe("chat:lobby", { onPublication: p => show(p) });
//   await h.publish("chat:lobby", "hello");
//
// It speaks the superchat protocol (docs/protocol.md) over WebSocket, and
// falls back to long polling, then ajax polling, when the WebSocket cannot
// open (a proxy that refuses upgrades); on a fallback it tries WebSocket
// again now and then and moves back when it works. When a connection drops
// it reconnects with jittered exponential backoff and resubscribes from the
// last position it saw in each channel, so the server replays what was
// missed, or says plainly that it cannot (onRecovery with recovered false).

const TRANSPORTS = ["websocket", "longpoll", "poll"];

export class Hotline extends EventTarget {
  // options: url (the server's http(s) base, default this page's origin),
  // token (a JWT, or "" in development mode), transport ("auto" or one of
  // websocket, longpoll, poll), pollInterval (ms, ajax polling),
  // upgradeAfter (ms before a fallback tries WebSocket again).
  constructor(options = {}) {
    super();
    this.url = (options.url || location.origin).replace(/\/$/, "");
    this.token = options.token || "";
    this.preference = options.transport || "auto";
    this.pollInterval = options.pollInterval || 1000;
    this.upgradeAfter = options.upgradeAfter || 30000;
    this.state = "disconnected"; // connecting, connected, disconnected, closed
    this.transport = "";
    this.info = null; // {session, user, name} from the server
    this._subs = new Map(); // channel -> {handlers, epoch, offset}
    this._pending = new Map(); // request id -> {resolve, reject}
    this._nextId = 1;
    this._conn = null;
    this._attempt = 0;
    this._timer = null;
    this._upgradeTimer = null;
    this._connect();
  }

  // subscribe listens to a channel. handlers: onPublication(p) with
  // p = {channel, epoch, offset, data, info}, onJoin(user), onLeave(user),
  // onRecovery({recovered, reason, replayed}) after each (re)subscribe.
  // since: a position {epoch, offset} to replay from.
  subscribe(channel, handlers = {}, since = null) {
    const sub = { channel, handlers, epoch: since ? since.epoch : "", offset: since ? since.offset : 0, since: !!since };
    this._subs.set(channel, sub);
    if (this.state === "connected") this._subscribe(sub);
    return {
      unsubscribe: () => {
        this._subs.delete(channel);
        if (this.state === "connected") this._request({ op: "unsubscribe", channel }).catch(() => {});
      },
      position: () => ({ epoch: sub.epoch, offset: sub.offset }),
    };
  }

  publish(channel, data) { return this._request({ op: "publish", channel, data }); }
  presence(channel) { return this._request({ op: "presence", channel }); }
  history(channel, opts = {}) { return this._request({ op: "history", channel, ...opts }); }

  // setTransport forces a transport ("auto" to let the client choose) and
  // reconnects with it.
  setTransport(preference) {
    this.preference = preference;
    this._drop(true);
  }

  close() {
    this.state = "closed";
    clearTimeout(this._timer);
    clearTimeout(this._upgradeTimer);
    if (this._conn) this._conn.close();
    this._conn = null;
    this._emit();
  }

  // --- connection management ---

  _order() {
    return this.preference === "auto" ? TRANSPORTS : [this.preference];
  }

  async _connect() {
    if (this.state === "closed") return;
    this._setState("connecting");
    for (const name of this._order()) {
      try {
        const conn = await this._open(name);
        if (this.state === "closed") { conn.close(); return; }
        this._adopt(conn, name);
        return;
      } catch (err) {
        console.debug(`hotline: ${name} failed:`, err.message || err);
      }
    }
    this._retry();
  }

  _open(name) {
    const handlers = {
      message: (m) => this._onMessage(m),
      lost: (why) => this._onLost(why),
    };
    if (name === "websocket") return openWebSocket(this.url, this.token, handlers);
    return openPolling(this.url, this.token, name, this.pollInterval, handlers);
  }

  _adopt(conn, name) {
    this._conn = conn;
    this.transport = name;
    this._attempt = 0;
    this._setState("connected");
    this._request({ op: "connect" }).then((r) => { this.info = r; this._emit(); }).catch(() => {});
    for (const sub of this._subs.values()) this._subscribe(sub);
    clearTimeout(this._upgradeTimer);
    if (this.preference === "auto" && name !== "websocket") {
      this._upgradeTimer = setTimeout(() => this._tryUpgrade(), this.upgradeAfter);
    }
  }

  // _tryUpgrade moves a polling client back to WebSocket when it works.
  async _tryUpgrade() {
    if (this.state !== "connected" || this.transport === "websocket") return;
    try {
      const conn = await this._open("websocket");
      const old = this._conn;
      this._conn = null;
      if (old) old.close();
      this._failAll("transport changed");
      this._adopt(conn, "websocket");
    } catch {
      this._upgradeTimer = setTimeout(() => this._tryUpgrade(), this.upgradeAfter);
    }
  }

  _onLost(why) {
    if (!this._conn) return; // already replaced or closed
    console.debug("hotline: connection lost:", why);
    this._conn = null;
    this._failAll("connection lost");
    this._retry();
  }

  // _drop closes the current connection and reconnects (at once if now).
  _drop(now) {
    const old = this._conn;
    this._conn = null;
    if (old) old.close();
    this._failAll("reconnecting");
    if (now) { this._attempt = 0; clearTimeout(this._timer); this._connect(); } else this._retry();
  }

  _retry() {
    if (this.state === "closed") return;
    this._setState("disconnected");
    clearTimeout(this._timer);
    const base = Math.min(10000, 250 * 2 ** this._attempt++);
    const delay = base / 2 + Math.random() * base / 2; // jitter: no thundering herd
    this._timer = setTimeout(() => this._connect(), delay);
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit();
  }

  _emit() { this.dispatchEvent(new Event("state")); }

  // --- requests and messages ---

  _request(req) {
    if (!this._conn) return Promise.reject(new Error("not connected"));
    const id = this._nextId++;
    const msg = { id, ...req };
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this._conn.send(msg).catch((err) => {
        this._pending.delete(id);
        reject(err);
      });
    });
  }

  _failAll(reason) {
    for (const p of this._pending.values()) p.reject(new Error(reason));
    this._pending.clear();
  }

  async _subscribe(sub) {
    const req = { op: "subscribe", channel: sub.channel };
    if (sub.epoch) req.since = { epoch: sub.epoch, offset: sub.offset };
    let res;
    try {
      res = await this._request(req);
    } catch (err) {
      console.debug("hotline: subscribe", sub.channel, err.message);
      return;
    }
    const had = !!sub.epoch;
    const replayed = res.publications || [];
    for (const p of replayed) this._deliver(sub, p);
    if (!had || res.recovered === false) {
      sub.epoch = res.epoch;
      sub.offset = res.offset;
    }
    if (sub.handlers.onRecovery) {
      sub.handlers.onRecovery({
        recovered: had ? res.recovered !== false : true,
        reason: res.reason || "",
        replayed: replayed.length,
        first: !had,
      });
    }
  }

  _deliver(sub, p) {
    // Skip what was already seen: a replay may overlap a live push.
    if (p.epoch === sub.epoch && p.offset <= sub.offset) return;
    sub.epoch = p.epoch;
    sub.offset = p.offset;
    if (sub.handlers.onPublication) sub.handlers.onPublication(p);
  }

  _onMessage(m) {
    if (m.id) {
      const p = this._pending.get(m.id);
      if (!p) return;
      this._pending.delete(m.id);
      if (m.error) p.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
      else p.resolve(m.result);
      return;
    }
    if (m.push) {
      const sub = this._subs.get(m.push.channel);
      if (!sub) return;
      if (m.push.join) { if (sub.handlers.onJoin) sub.handlers.onJoin(m.push.join); return; }
      if (m.push.leave) { if (sub.handlers.onLeave) sub.handlers.onLeave(m.push.leave); return; }
      if (!sub.epoch) return; // not subscribed yet: the reply sets the start
      this._deliver(sub, m.push);
      return;
    }
    if (m.disconnect) {
      this.dispatchEvent(Object.assign(new Event("disconnect"), { detail: m.disconnect }));
    }
  }
}

function withToken(url, token) {
  return token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
}

// openWebSocket resolves with a connection once the socket is open, and
// rejects if it closes before.
function openWebSocket(base, token, h) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(withToken(base.replace(/^http/, "ws") + "/chat", token), "superchat");
    let open = false;
    const timer = setTimeout(() => { if (!open) { ws.close(); reject(new Error("timeout")); } }, 5000);
    ws.onopen = () => {
      open = true;
      clearTimeout(timer);
      resolve({
        send: (msg) => {
          if (ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("socket closed"));
          ws.send(JSON.stringify(msg));
          return Promise.resolve();
        },
        close: () => { ws.onclose = null; ws.close(1000); },
      });
    };
    ws.onmessage = (e) => { try { h.message(JSON.parse(e.data)); } catch (err) { console.warn("hotline: bad message", err); } };
    ws.onclose = (e) => {
      clearTimeout(timer);
      if (!open) reject(new Error(`websocket closed before opening (${e.code})`));
      else h.lost(`websocket closed ${e.code} ${e.reason}`);
    };
  });
}

// openPolling opens a long-polling or ajax-polling session. Each GET says
// the last seq it got (ack), so a lost response is sent again and a
// retried one brings no duplicates.
async function openPolling(base, token, transport, interval, h) {
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const res = await fetch(base + "/poll/open", { method: "POST", headers, body: JSON.stringify({ transport }) });
  if (!res.ok) throw new Error(`poll open: ${res.status} ${await res.text()}`);
  const { session } = await res.json();
  const url = base + "/poll/" + encodeURIComponent(session);
  let ack = 0, closed = false, failures = 0;
  const ctrl = new AbortController();
  (async () => {
    while (!closed) {
      try {
        const r = await fetch(`${url}?ack=${ack}`, { signal: ctrl.signal, cache: "no-store" });
        if (r.status === 404 || r.status === 401) { closed = true; h.lost(`session gone (${r.status})`); return; }
        if (!r.ok) throw new Error(`poll ${r.status}`);
        const body = await r.json();
        failures = 0;
        for (const m of body.messages || []) {
          ack = m.seq;
          h.message(m.data);
        }
        if (body.disconnect) { closed = true; h.lost(`disconnected ${body.disconnect.code} ${body.disconnect.reason}`); return; }
      } catch (err) {
        if (closed) return;
        if (++failures >= 3) { closed = true; h.lost(err.message); return; }
        await sleep(500 * failures);
        continue;
      }
      if (transport === "poll" && !closed) await sleep(interval);
    }
  })();
  return {
    send: async (msg) => {
      const r = await fetch(url, { method: "POST", body: JSON.stringify(msg) });
      if (!r.ok) throw new Error(`send: ${r.status}`);
    },
    close: () => {
      closed = true;
      ctrl.abort();
      fetch(url, { method: "DELETE" }).catch(() => {});
    },
  };
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
