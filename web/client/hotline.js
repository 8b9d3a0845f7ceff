// hotline.js: the browser client of a hotline server. A small ES module with
// no dependencies.
//
//   import { Hotline } from "/hotline.js";
//   const h = new Hotline({ token, transport: "auto" });
//   h.addEventListener("state", () => console.log(h.state, h.transport));
//   const sub = h.subscribe("chat:lobby", {
//     onPublication: (p) => show(p),
//     onRecovery: (r) => { if (!r.recovered) resync(r.reason); },
//   });
//   await h.publish("chat:lobby", "hello");
//
// It speaks the superchat protocol (docs/protocol.md) over WebSocket, and
// falls back to long polling, then ajax polling, when the WebSocket cannot
// open (a proxy that refuses upgrades); on a fallback it tries WebSocket
// again now and then and moves back when it works. When a connection drops
// it reconnects with jittered exponential backoff. Every new connection
// (a reconnect, a fallback, an upgrade, setTransport) continues the same
// server session when the server still has it: subscriptions and queued
// messages carry over and nothing is replayed. When the server has lost
// it, the client resubscribes from the last position it delivered in each
// channel.
//
// The promise it keeps: each subscription's onPublication sees the
// publications of its channel in order, each once, or onRecovery says
// plainly that some were lost (recovered false, with the reason). A live
// push that does not follow the last one delivered (same epoch, offset + 1)
// and the server's gap notice both start a recovery from the last
// delivered position; the missed publications are delivered, then
// onRecovery reports recovered true.
//
// Types are in hotline.d.ts beside it (served at /hotline.d.ts); this
// folder is also an npm package (package.json, no build step).
//
// The token never goes into a URL: the WebSocket handshake carries it in
// the hotline_token cookie (set for the handshake only), polling requests
// in an Authorization: Bearer header.

const TRANSPORTS = ["websocket", "longpoll", "poll"];
const HANDSHAKE_TIMEOUT = 5000; // ms a WebSocket may take to open
const TOKEN_COOKIE = "hotline_token";
const MAX_BATCH = 64; // requests per polling POST
const POLL_TIMEOUT = 90000; // ms; a long poll is held 25 s by default

export class Hotline extends EventTarget {
  // options:
  //   url           the server's http(s) base; default this page's origin
  //   token         a JWT, or "" in development mode; or a function that
  //                 returns one (or a promise of one), called before each
  //                 connection, so a reconnect after the token expired
  //                 uses a fresh one, and shortly before the session's
  //                 token expires, to renew it in band (op refresh) and
  //                 stay connected
  //   transport     "auto", or one of websocket, longpoll, poll
  //   pollInterval  ms between ajax polls
  //   upgradeAfter  ms before a fallback tries WebSocket again
  //   tokenInURL    send the token as ?token= on the WebSocket URL instead
  //                 of the cookie. Only for a server on another host than
  //                 the page (a cookie cannot reach it); the token then
  //                 lands in access and proxy logs.
  //   requestTimeout  ms a request waits for its reply before it fails
  //                 with err.code "timeout" (default 15000; 0: no limit)
  //   idleTimeout   ms without any message from the server after which
  //                 the client probes the connection with a request; no
  //                 reply within requestTimeout means the connection is
  //                 dead (a proxy that went silent): reconnect (default
  //                 30000; 0: never). A browser answers WebSocket pings
  //                 itself and never tells the page, so the probe is in
  //                 band.
  constructor(options = {}) {
    super();
    this.url = (options.url || location.origin).replace(/\/$/, "");
    this._tokenSource = options.token || "";
    this.token = typeof this._tokenSource === "function" ? "" : this._tokenSource;
    this.preference = options.transport || "auto";
    this.pollInterval = options.pollInterval || 1000;
    this.upgradeAfter = options.upgradeAfter || 30000;
    this.tokenInURL = !!options.tokenInURL;
    this.requestTimeout = options.requestTimeout ?? 15000;
    this.idleTimeout = options.idleTimeout ?? 30000;
    this.state = "disconnected"; // connecting, connected, disconnected, closed
    this.transport = "";
    this.info = null; // {session, user, name} from the server
    this._subs = new Map(); // channel -> subscription (see subscribe)
    this._onServer = new Set(); // channels subscribed (or asked) on this connection
    this._pending = new Map(); // request id -> {onResult, onError}
    this._nextId = 1;
    this._conn = null;
    this._session = null; // the server session this client continues
    this._ack = 0; // the last polling seq delivered, for the next connection
    this._dropped = ""; // the transport of a connection that died under us
    this._connGen = 0; // the current _connect; older ones give up
    this._outbox = null; // requests made during a transport switch
    this._detaching = null; // a switch's old connection letting go
    this._moving = null; // a WebSocket a switch moves the session off
    this._suspended = false; // the page is hidden (pagehide): no session
    this._attempt = 0;
    this._timer = null;
    this._upgradeTimer = null;
    this._refreshTimer = null;
    this._lastRecv = 0; // when the connection last brought anything
    this._probing = false;
    this._liveTimer = this.idleTimeout > 0 ? setInterval(() => this._checkAlive(), Math.max(250, this.idleTimeout / 4)) : null;
    // A page that goes away ends its session at once, so that its user
    // leaves presence now rather than after the server's grace period.
    // Not only when it unloads: Chromium keeps a page in its back-forward
    // cache with its WebSocket open. If the page comes back from that
    // cache, the client connects again and recovers from its positions.
    if (typeof window !== "undefined") {
      window.addEventListener("pagehide", () => this._suspend());
      window.addEventListener("pageshow", (e) => { if (e.persisted) this._wake(); });
    }
    this._connect();
  }

  // subscribe listens to a channel. handlers:
  //   onPublication(p)  p = {channel, epoch, offset, data, info}, in order,
  //                     each once
  //   onRecovery(r)     after each (re)subscribe and each repaired gap:
  //                     r = {recovered, reason, replayed, first, cause,
  //                     since, gap}. first: the first subscribe (nothing to
  //                     recover). cause: "subscribe", "reconnect" (a new
  //                     server session, or a WebSocket that died under a
  //                     continued one), "gap"
  //                     (the server's gap notice, in r.gap) or "jump" (a
  //                     push that skipped offsets or changed epoch). When
  //                     recovered is true, the replayed publications have
  //                     reached onPublication; when false, those after
  //                     r.since are lost and the subscription continues
  //                     from the channel's current top.
  //   onJoin(user), onLeave(user)
  //   onError(err)      a refused subscribe (err.code 403, 400...);
  //                     without it the client dispatches an "error" event
  // since: a position {epoch, offset} to replay from.
  subscribe(channel, handlers = {}, since = null) {
    const old = this._subs.get(channel);
    if (old) old.gen++;
    const sub = {
      channel,
      handlers,
      epoch: since ? since.epoch || "" : "",
      offset: since ? since.offset || 0 : 0,
      positioned: !!since, // has a position to recover from
      state: "idle", // idle (not on this connection), subscribing, live
      gen: 0, // the current subscribe attempt; stale callbacks compare it
      report: null, // onRecovery held until the replay reaches report.until
      retries: 0,
      timer: null,
    };
    this._subs.set(channel, sub);
    if (this.state === "connected") this._subscribe(sub, "subscribe", null);
    return {
      unsubscribe: () => {
        if (this._subs.get(channel) !== sub) return;
        this._subs.delete(channel);
        sub.gen++;
        clearTimeout(sub.timer);
        if (this._onServer.delete(channel)) this._call({ op: "unsubscribe", channel }, () => {}, () => {});
      },
      position: () => ({ epoch: sub.epoch, offset: sub.offset }),
    };
  }

  // publish sends data; opts.idempotencyKey makes a retry within the
  // server's window return the first result instead of publishing again.
  publish(channel, data, opts = {}) {
    const req = { op: "publish", channel, data };
    if (opts.idempotencyKey) req.idempotency_key = opts.idempotencyKey;
    return this._request(req);
  }
  presence(channel) { return this._request({ op: "presence", channel }); }
  history(channel, opts = {}) { return this._request({ op: "history", channel, ...opts }); }

  // setTransport forces a transport ("auto" to let the client choose) and
  // moves the session onto it: subscriptions, positions and the server's
  // queue carry over, nothing is replayed (see _switch).
  setTransport(preference) {
    this.preference = preference;
    if (this._conn) this._switch(this._order());
    else { this._attempt = 0; clearTimeout(this._timer); this._connect(); }
  }

  // close ends the session: the server drops it at once (its presence
  // leaves now), and the client stays closed.
  close() {
    this.state = "closed";
    clearTimeout(this._timer);
    clearTimeout(this._upgradeTimer);
    clearInterval(this._liveTimer);
    clearTimeout(this._refreshTimer);
    for (const sub of this._subs.values()) clearTimeout(sub.timer);
    if (this._conn) this._conn.close();
    if (this._moving) this._moving.close();
    this._conn = null;
    this._moving = null;
    this._session = null;
    this._failAll("closed");
    this._emit();
  }

  // _suspend ends the session (the page is going away) but keeps the
  // subscriptions and their positions, for _wake.
  _suspend() {
    if (this.state === "closed" || this._suspended) return;
    this._suspended = true;
    this._connGen++; // a connect under way gives up
    clearTimeout(this._timer);
    clearTimeout(this._upgradeTimer);
    clearTimeout(this._refreshTimer);
    if (this._conn) this._conn.close();
    if (this._moving) this._moving.close();
    this._conn = null;
    this._moving = null;
    this._session = null;
    this._failAll("page hidden");
    this._setState("disconnected");
  }

  _wake() {
    if (!this._suspended || this.state === "closed") return;
    this._suspended = false;
    this._attempt = 0;
    this._connect();
  }

  // --- connection management ---
  //
  // The client keeps one server session for as long as it can: a new
  // connection (a reconnect, a fallback, an upgrade back to WebSocket, a
  // forced transport) names it (/chat?session=ID&ack=N, or "session" in
  // /poll/open), and the server continues it within its grace period with
  // the subscriptions and the queue it had. Only when the server answers
  // with another session (the old one expired or ended) does the client
  // resubscribe from the last positions it delivered.

  _order() {
    return this.preference === "auto" ? TRANSPORTS : [this.preference];
  }

  // _resumeFrom is what the next connection asks to continue: the session
  // and the last polling seq delivered (WebSocket has none: the server
  // counts a message delivered once written).
  _resumeFrom() {
    return this._session ? { id: this._session, ack: this._ack } : null;
  }

  async _connect(order = this._order()) {
    if (this.state === "closed" || this._suspended) return;
    const gen = ++this._connGen;
    this._setState("connecting");
    let wait = 0; // the longest Retry-After a server asked for
    if (!(await this._freshToken())) {
      if (this.state !== "closed" && gen === this._connGen) this._retry();
      return;
    }
    if (this._detaching) await this._detaching; // the seq to ack comes with it
    if (this.state === "closed" || gen !== this._connGen) return;
    // A WebSocket the session moves off (see _switch) delivers until the
    // server closes it; polling starts after that.
    const moving = this._moving;
    // If the server does not close it in time, let go of it ourselves
    // (unless it is serving again: nothing else opened).
    const moved = moving && Promise.race([moving.closed, sleep(HANDSHAKE_TIMEOUT).then(() => { if (this._conn !== moving) moving.detach(); })]);
    for (const name of order) {
      const resume = this._resumeFrom();
      try {
        const conn = await this._open(name, resume, name === "websocket" ? null : moved);
        // Closed, or another connect started meanwhile: never keep two
        // connections, and never end the session the other one uses.
        if (this.state === "closed" || gen !== this._connGen || this._conn) {
          if (resume && conn.session === resume.id) conn.detach(); else conn.close();
          return;
        }
        if (moving && this._moving === moving) {
          this._moving = null;
          // Not continued: the old session still lives on the socket.
          if (conn.session !== resume.id) moving.close();
        }
        this._adopt(conn, name, resume);
        return;
      } catch (err) {
        if (err.retryAfter) wait = Math.max(wait, err.retryAfter);
        console.debug(`hotline: ${name} failed:`, err.message || err);
      }
      if (this.state === "closed" || gen !== this._connGen) return;
    }
    if (moving && this._moving === moving) {
      this._moving = null;
      if (moving.isOpen()) {
        // Nothing else opened: the session stays on its WebSocket.
        this._conn = moving;
        this._setState("connected");
        const outbox = this._outbox || [];
        this._outbox = null;
        for (const m of outbox) this._send(moving, m);
        return;
      }
      this._dropped = "websocket";
    }
    this._retry(wait);
  }

  // _open opens a connection of transport name, continuing the session
  // resume names if the server can. A polling connection starts asking
  // for messages once startAfter (if any) has settled.
  async _open(name, resume, startAfter) {
    const ref = {}; // the connection, once open: lost() names it
    const handlers = {
      message: (m) => { this._lastRecv = Date.now(); this._onMessage(m); },
      alive: () => { this._lastRecv = Date.now(); },
      lost: (why) => this._onLost(ref.conn, why),
    };
    ref.conn = name === "websocket"
      ? await openWebSocket(this.url, this.token, this.tokenInURL, resume, () => this._nextId++, handlers)
      : await openPolling(this.url, () => this.token, name, this.pollInterval, resume, startAfter, handlers);
    return ref.conn;
  }

  _adopt(conn, name, resume) {
    const resumed = !!resume && conn.session === resume.id;
    const dropped = this._dropped; // the last connection died under us
    this._dropped = "";
    this._conn = conn;
    this._session = conn.session;
    this._ack = 0;
    this.transport = name;
    this._attempt = 0;
    this._lastRecv = Date.now();
    this._probing = false;
    if (!resumed) {
      // A new session: what the old one owed is not coming.
      this._onServer.clear();
      this._failAll("session lost");
    }
    this._setState("connected");
    const outbox = this._outbox || [];
    this._outbox = null;
    if (conn.info) this._connected(conn, conn.info);
    else this._request({ op: "connect" }).then((r) => this._connected(conn, r)).catch(() => {});
    for (const sub of this._subs.values()) {
      // On a continued session a live subscription stays as it is, unless
      // the connection dropped under a WebSocket: what the server wrote
      // into the dead socket is lost, so it recovers from its position.
      // A subscribe still in flight gets its reply on the new connection.
      if (resumed && sub.state === "subscribing" && !dropped) continue;
      if (resumed && sub.state === "live" && dropped !== "websocket") continue;
      sub.gen++;
      clearTimeout(sub.timer);
      sub.state = "idle";
      this._subscribe(sub, sub.positioned ? "reconnect" : "subscribe", null);
    }
    for (const m of outbox) this._send(conn, m);
    if (conn.start) conn.start(); // messages that came with the open
    clearTimeout(this._upgradeTimer);
    if (this.preference === "auto" && name !== "websocket") {
      this._upgradeTimer = setTimeout(() => this._tryUpgrade(), this.upgradeAfter);
    }
  }

  _connected(conn, r) {
    if (this._conn !== conn) return;
    this.info = r;
    this._scheduleRefresh(conn, r.exp);
    this._emit();
  }

  // _freshToken asks the token function, if there is one, for the token
  // of the next connection. It reports false if that failed (the
  // application hears of it through the "error" event) or the client was
  // closed meanwhile.
  async _freshToken() {
    if (typeof this._tokenSource !== "function") return true;
    try {
      this.token = (await this._tokenSource()) || "";
    } catch (err) {
      this._error(Object.assign(new Error(`token: ${err.message || err}`), { cause: err }));
      return false;
    }
    return this.state !== "closed";
  }

  // _scheduleRefresh plans an in-band token refresh (op refresh) shortly
  // before exp (Unix seconds, from the connect or refresh result): the
  // server ends a session whose token expired (4001). Only with a token
  // function: a fixed token cannot be renewed.
  _scheduleRefresh(conn, exp) {
    clearTimeout(this._refreshTimer);
    if (!exp || typeof this._tokenSource !== "function") return;
    // Renew a fifth of the lifetime before the end (2..30 s: room for the
    // token function and a round trip), but never sooner than halfway,
    // so a very short token does not make a tight loop.
    const left = exp * 1000 - Date.now();
    const margin = Math.min(left / 2, Math.max(2000, Math.min(30000, left / 5)));
    const at = Math.max(0, left - margin);
    const max = 2 ** 31 - 1; // setTimeout's limit: look again then
    this._refreshTimer = setTimeout(() => {
      if (at > max) this._scheduleRefresh(conn, exp);
      else this._refresh(conn);
    }, Math.min(at, max));
  }

  async _refresh(conn) {
    if (this._conn !== conn || !(await this._freshToken()) || this._conn !== conn) return;
    this._call({ op: "refresh", token: this.token }, (r) => {
      if (this._conn !== conn) return;
      if (this.info) this.info.exp = r.exp;
      this._scheduleRefresh(conn, r.exp);
    }, (err) => {
      // The session ends at exp (disconnect 4001); the reconnect asks
      // the token function again.
      if (this._conn === conn) this._error(Object.assign(err, { op: "refresh" }));
    });
  }

  // _tryUpgrade moves a polling client back to WebSocket when it works;
  // if it does not, the session goes on polling.
  _tryUpgrade() {
    if (this.state !== "connected" || this.transport === "websocket") return;
    this._switch(["websocket", this.transport]);
  }

  // _switch moves the session to the first transport of order that opens.
  // The old connection lets go of the session without ending it: polling
  // stops asking (its last seq goes to the next connection as ack, so
  // nothing is sent twice) after the requests it carries are handed over;
  // a WebSocket closes with 4000, which the server takes as a drop, not a
  // goodbye. Requests made meanwhile wait in an outbox for the next
  // connection; those in flight keep waiting for their replies, which the
  // continued session sends on the new connection.
  //
  // From a WebSocket to polling the order is the other way round: the
  // browser drops what reaches a socket it has begun to close, and the
  // server counts a message delivered once written. So the socket stays
  // open and keeps delivering while polling opens; the server, moving the
  // session, ends the socket after the message it is writing (close
  // 4000), and only then does polling start, from what is left.
  async _switch(order) {
    const old = this._conn;
    if (!old) return;
    this._conn = null;
    this._outbox = this._outbox || [];
    clearTimeout(this._upgradeTimer);
    this._setState("connecting");
    if (this.transport === "websocket" && order[0] !== "websocket") {
      this._moving = old;
      this._ack = 0;
      this._attempt = 0;
      clearTimeout(this._timer);
      this._connect(order);
      return;
    }
    const detaching = old.detach().then((ack) => {
      this._ack = ack;
      if (this._detaching === detaching) this._detaching = null;
    });
    this._detaching = detaching;
    this._attempt = 0;
    clearTimeout(this._timer);
    this._connect(order);
  }

  _onLost(conn, why) {
    if (!conn || this._conn !== conn) return; // already replaced or closed
    console.debug("hotline: connection lost:", why);
    this._lost(conn, false);
  }

  // _lost gives up a connection that died (or that _checkAlive found
  // silent): its session is asked for again by the next connection.
  _lost(conn, silent) {
    this._conn = null;
    this._dropped = this.transport;
    this._ack = conn.ack();
    if (silent) conn.detach();
    this._failAll("connection lost");
    this._retry();
  }

  // _retry reconnects after a jittered backoff, or after what the server
  // asked for (Retry-After, in ms) with up to a fifth more as jitter.
  _retry(retryAfter = 0) {
    if (this.state === "closed" || this._suspended) return;
    this._setState("disconnected");
    const outbox = this._outbox || [];
    this._outbox = null;
    for (const m of outbox) this._fail(m.id, new Error("not connected"));
    clearTimeout(this._timer);
    const delay = Math.max(backoff(this._attempt++), retryAfter * (1 + Math.random() / 5));
    this._timer = setTimeout(() => this._connect(), delay);
  }

  // _checkAlive probes a connection that has been silent for idleTimeout;
  // a probe without reply means the connection is dead.
  _checkAlive() {
    const conn = this._conn;
    if (!conn || this._probing || Date.now() - this._lastRecv < this.idleTimeout) return;
    this._probing = true;
    this._call({ op: "connect" }, (r) => {
      if (this._conn === conn) { this._probing = false; this._connected(conn, r); }
    }, (err) => {
      if (this._conn !== conn) return;
      this._probing = false;
      if (err.code !== "timeout") return;
      console.debug("hotline: connection silent, reconnecting");
      this._lost(conn, true);
    });
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit();
  }

  _emit() { this.dispatchEvent(new Event("state")); }

  _error(err, handlers) {
    if (handlers && handlers.onError) { handlers.onError(err); return; }
    this.dispatchEvent(Object.assign(new Event("error"), { error: err }));
  }

  // --- requests and messages ---

  // _call sends one request; onResult or onError runs synchronously when
  // its reply is handled, before any later message of the connection, so a
  // subscribe reply sets the subscription's start before the pushes that
  // follow it (a polling response carries both in one batch).
  _call(req, onResult, onError) {
    const conn = this._conn;
    if (!conn && !this._outbox) { onError(new Error("not connected")); return; }
    const id = this._nextId++;
    let timer = null;
    if (this.requestTimeout > 0) {
      timer = setTimeout(() => {
        this._fail(id, Object.assign(new Error(`no reply to ${req.op} within ${this.requestTimeout} ms`), { code: "timeout" }));
      }, this.requestTimeout);
    }
    this._pending.set(id, {
      onResult: (r) => { clearTimeout(timer); onResult(r); },
      onError: (e) => { clearTimeout(timer); onError(e); },
    });
    const msg = { id, ...req };
    if (conn) this._send(conn, msg);
    else this._outbox.push(msg); // a transport switch is under way
  }

  _send(conn, msg) {
    conn.send(msg).catch((err) => this._fail(msg.id, err));
  }

  // _fail ends the request id with err, if it still waits.
  _fail(id, err) {
    const p = this._pending.get(id);
    if (p && this._pending.delete(id)) p.onError(err);
  }

  _request(req) {
    return new Promise((resolve, reject) => this._call(req, resolve, reject));
  }

  _failAll(reason) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const p of pending) p.onError(new Error(reason));
  }

  // _subscribe (re)subscribes sub on the current connection: from its last
  // delivered position if it has one. If the channel is subscribed on this
  // connection already (a gap being repaired), it unsubscribes first; the
  // two requests are handled in order, so pushes of the old subscription
  // all come before the new subscribe's reply.
  _subscribe(sub, cause, gap) {
    if (!this._conn) { sub.state = "idle"; return; } // the next connection subscribes
    const gen = ++sub.gen;
    clearTimeout(sub.timer);
    sub.state = "subscribing";
    const first = !sub.positioned;
    const since = { epoch: sub.epoch, offset: sub.offset };
    const req = { op: "subscribe", channel: sub.channel };
    if (!first) req.since = since;
    if (this._onServer.has(sub.channel)) this._call({ op: "unsubscribe", channel: sub.channel }, () => {}, () => {});
    this._onServer.add(sub.channel);
    const conn = this._conn;
    this._call(req,
      (res) => this._subscribed(sub, gen, res, { first, since, cause, gap }),
      (err) => this._subscribeFailed(sub, gen, conn, err, cause, gap));
  }

  _current(sub, gen) { return this._subs.get(sub.channel) === sub && sub.gen === gen; }

  _subscribed(sub, gen, res, at) {
    if (!this._current(sub, gen)) return;
    sub.state = "live";
    const top = { epoch: res.epoch || "", offset: res.offset || 0 };
    const base = { first: at.first, cause: at.cause, since: at.since, gap: at.gap, replayed: 0 };
    if (at.first) {
      sub.epoch = top.epoch;
      sub.offset = top.offset;
      sub.positioned = true;
      this._report(sub, { ...base, recovered: true, reason: "" });
      return;
    }
    if (res.recovered === false) {
      // What followed since is gone; continue from the top.
      sub.epoch = top.epoch;
      sub.offset = top.offset;
      const carried = sub.report ? sub.report.replayed : 0;
      sub.report = null;
      this._report(sub, { ...base, replayed: carried, recovered: false, reason: res.reason || "unknown" });
      return;
    }
    // Recovered: the publications after since come in the reply (older
    // servers) or as pushes right after it; report once they are all in.
    const carried = sub.report ? sub.report.replayed : 0;
    sub.report = { ...base, replayed: carried, recovered: true, reason: "", until: top };
    for (const p of res.publications || []) this._push(sub, p);
    this._maybeReport(sub);
  }

  _subscribeFailed(sub, gen, conn, err, cause, gap) {
    if (!this._current(sub, gen)) return;
    sub.state = "idle";
    if (this._conn !== conn) return; // connection lost: the next one subscribes
    // Refused by the server (403, 400, 404, 429 too many subscriptions):
    // tell the application. A send that failed, a timeout, a failing
    // server: try again.
    const code = err.code || 0;
    const retry = !err.reply || code >= 500 || (code === 400 && /already subscribed/.test(err.message));
    if (!retry) {
      this._onServer.delete(sub.channel);
      this._error(Object.assign(err, { channel: sub.channel }), sub.handlers);
      return;
    }
    const g = ++sub.gen;
    sub.timer = setTimeout(() => { if (this._current(sub, g)) this._subscribe(sub, cause, gap); }, backoff(sub.retries++));
  }

  // _recover repairs a lost position of a live subscription: a gap
  // notice, or a push that does not follow the last one delivered.
  _recover(sub, cause, gap) {
    if (sub.state !== "live") return; // a resubscribe is already under way
    if (!sub.report) { this._subscribe(sub, cause, gap); return; }
    // The replay of the last recovery itself skipped: try again, but not
    // in a tight loop against a server that keeps doing it.
    const g = ++sub.gen;
    sub.state = "subscribing";
    sub.timer = setTimeout(() => { if (this._current(sub, g)) this._subscribe(sub, cause, gap); }, backoff(sub.retries++));
  }

  // _push delivers p if it follows the last delivered publication, drops it
  // if it was delivered already, and treats anything else as a lost
  // position.
  _push(sub, p) {
    if (!sub.positioned) return; // the subscribe reply sets the start
    const e = p.epoch || "", o = p.offset || 0;
    let next;
    if (e === sub.epoch) {
      if (o <= sub.offset) return; // a duplicate: a replay overlapping live pushes
      next = o === sub.offset + 1;
    } else {
      // An empty stream ({"",0}) continues with offset 1 of any epoch.
      next = sub.epoch === "" && sub.offset === 0 && o === 1;
    }
    if (!next) {
      // While a resubscribe is in flight, what the old subscription still
      // pushes is replayed by the new one or reported lost by its reply.
      if (sub.state === "live") this._recover(sub, "jump", null);
      return;
    }
    sub.epoch = e;
    sub.offset = o;
    if (sub.report) sub.report.replayed++;
    if (sub.handlers.onPublication) sub.handlers.onPublication(p);
    if (sub.report && this._subs.get(sub.channel) === sub) this._maybeReport(sub);
  }

  _maybeReport(sub) {
    const r = sub.report;
    if (!r || sub.state !== "live") return;
    const u = r.until;
    if (u.offset !== 0 && !(sub.epoch === u.epoch && sub.offset >= u.offset)) return;
    sub.report = null;
    this._report(sub, r);
  }

  _report(sub, r) {
    sub.retries = 0;
    if (!sub.handlers.onRecovery) return;
    const { until, ...out } = r; // eslint-disable-line no-unused-vars
    sub.handlers.onRecovery(out);
  }

  _onMessage(m) {
    if (m.id) {
      const p = this._pending.get(m.id);
      if (!p) return;
      this._pending.delete(m.id);
      if (m.error) p.onError(Object.assign(new Error(m.error.message), { code: m.error.code, reply: true }));
      else p.onResult(m.result);
      return;
    }
    if (m.push) {
      const sub = this._subs.get(m.push.channel);
      if (!sub) return;
      if (m.push.join) { if (sub.handlers.onJoin) sub.handlers.onJoin(m.push.join); return; }
      if (m.push.leave) { if (sub.handlers.onLeave) sub.handlers.onLeave(m.push.leave); return; }
      if (sub.state === "idle") return; // not subscribed on this connection
      this._push(sub, m.push);
      return;
    }
    if (m.gap) {
      const sub = this._subs.get(m.gap.channel);
      if (sub) this._recover(sub, "gap", m.gap);
      return;
    }
    if (m.disconnect) {
      this.dispatchEvent(Object.assign(new Event("disconnect"), { detail: m.disconnect }));
    }
  }
}

// backoff is a jittered exponential delay in ms: no thundering herd.
function backoff(attempt) {
  const base = Math.min(10000, 250 * 2 ** Math.min(attempt, 10));
  return base / 2 + Math.random() * base / 2;
}

// The WebSocket handshake cannot carry an Authorization header from a
// browser, so the token rides in a cookie that exists only while the
// socket opens: Path=/, SameSite=Strict, Secure on https, expiring with the
// handshake timeout, and removed as soon as the socket opened or failed.
function setTokenCookie(token, secure) {
  if (!/^[A-Za-z0-9._~+/=-]+$/.test(token)) throw new Error("token has characters a cookie cannot carry");
  const age = Math.ceil(HANDSHAKE_TIMEOUT / 1000);
  document.cookie = `${TOKEN_COOKIE}=${token}; Path=/; Max-Age=${age}; SameSite=Strict${secure ? "; Secure" : ""}`;
  // Read it back: the browser may apply the write asynchronously, and a
  // handshake started before it would go without the cookie (seen in
  // Chromium as a sporadic 401 on a reconnect). The read is answered by
  // the cookie store after the write.
  if (!document.cookie.split("; ").includes(`${TOKEN_COOKIE}=${token}`)) throw new Error("cannot set the token cookie");
}

function clearTokenCookie(token, secure) {
  // Another client of this page may have set its own token meanwhile.
  const mine = document.cookie.split("; ").some((c) => c === `${TOKEN_COOKIE}=${token}`);
  if (mine) document.cookie = `${TOKEN_COOKIE}=; Path=/; Max-Age=0; SameSite=Strict${secure ? "; Secure" : ""}`;
}

// openWebSocket resolves with a connection once the socket is open and
// the server has answered its connect request (conn.info: the session,
// the user). resume {id, ack} asks to continue that session; conn.session
// says which one the server gave. Messages that come before the connect
// reply (the continued session's queue) wait for start(). It rejects if
// the socket closes before.
function openWebSocket(base, token, tokenInURL, resume, nextId, h) {
  return new Promise((resolve, reject) => {
    let url = base.replace(/^http/, "ws") + "/chat";
    const q = new URLSearchParams();
    if (resume) { q.set("session", resume.id); q.set("ack", String(resume.ack || 0)); }
    const secure = url.startsWith("wss:") || location.protocol === "https:";
    const cookie = token && !tokenInURL;
    if (token && tokenInURL) q.set("token", token);
    if ([...q].length) url += "?" + q;
    if (cookie) setTokenCookie(token, secure);
    const done = () => { if (cookie) clearTokenCookie(token, secure); };
    let ws;
    try {
      ws = new WebSocket(url, "superchat");
    } catch (err) {
      done();
      reject(err);
      return;
    }
    let open = false; // resolved
    let early = []; // messages before start(); null once started
    let settle;
    const closed = new Promise((r) => { settle = r; });
    const connectId = nextId();
    const timer = setTimeout(() => { if (!open) { done(); ws.onclose = null; ws.close(); reject(new Error("timeout")); } }, HANDSHAKE_TIMEOUT);
    const conn = {
      session: "",
      info: null,
      send: (msg) => {
        if (ws.readyState !== WebSocket.OPEN) return Promise.reject(new Error("socket closed"));
        ws.send(JSON.stringify(msg));
        return Promise.resolve();
      },
      start: () => { const m = early; early = null; for (const x of m) h.message(x); },
      ack: () => 0, // the server counts a message delivered once written
      isOpen: () => ws.readyState === WebSocket.OPEN,
      closed, // settles when the socket has closed
      // close ends the session (1000: the server drops it at once).
      close: () => { ws.onclose = null; ws.onmessage = null; ws.close(1000); settle(); },
      // detach leaves the session for the next connection: 4000 is not a
      // goodbye, so the server keeps it for its grace period.
      detach: () => { ws.onclose = null; ws.onmessage = null; ws.close(4000, "switching transport"); settle(); return Promise.resolve(0); },
    };
    ws.onopen = () => {
      done();
      ws.send(JSON.stringify({ id: connectId, op: "connect" }));
    };
    ws.onmessage = (e) => {
      let m;
      try { m = JSON.parse(e.data); } catch (err) { console.warn("hotline: bad message", err); return; }
      if (!open && m.id === connectId) {
        clearTimeout(timer);
        if (m.error) { ws.onclose = null; ws.close(1000); reject(new Error(`connect: ${m.error.message}`)); return; }
        open = true;
        conn.info = m.result;
        conn.session = m.result.session;
        resolve(conn);
        return;
      }
      if (early) early.push(m);
      else h.message(m);
    };
    ws.onclose = (e) => {
      clearTimeout(timer);
      done();
      settle();
      if (!open) reject(new Error(`websocket closed before opening (${e.code})`));
      else h.lost(`websocket closed ${e.code} ${e.reason}`);
    };
  });
}

// openPolling opens a long-polling or ajax-polling session, or continues
// the session resume names ({id, ack}: the server keeps it if it can,
// else opens a new one; conn.session says which). It asks for messages
// once startAfter (a promise, or null) has settled. Every request carries
// the current token (token()) as Authorization: Bearer. Each GET says the
// last seq it got (ack), so a lost response is sent again and a retried
// one brings no duplicates. Requests go out one POST at a time (batched),
// so the server handles them in the order they were made.
async function openPolling(base, token, transport, interval, resume, startAfter, h) {
  const authz = () => (token() ? { Authorization: "Bearer " + token() } : {});
  const body = { transport };
  if (resume) body.session = resume.id;
  const res = await fetch(base + "/poll/open", { method: "POST", headers: authz(), body: JSON.stringify(body) });
  if (!res.ok) throw Object.assign(new Error(`poll open: ${res.status} ${await res.text()}`), { retryAfter: retryAfter(res) });
  const { session } = await res.json();
  const url = base + "/poll/" + encodeURIComponent(session);
  let ack = resume && resume.id === session ? resume.ack || 0 : 0;
  let closed = false, failures = 0;
  const ctrl = new AbortController();
  (async () => {
    if (startAfter) await startAfter;
    while (!closed) {
      try {
        // A poll that outlives any sensible hold went into a black hole.
        const signal = AbortSignal.any([ctrl.signal, AbortSignal.timeout(POLL_TIMEOUT)]);
        const r = await fetch(`${url}?ack=${ack}`, { headers: authz(), signal, cache: "no-store" });
        if (closed) return;
        if (r.status === 404 || r.status === 401 || r.status === 403) { closed = true; h.lost(`session gone (${r.status})`); return; }
        if (r.status === 503) {
          // Too many held polls: wait what the server says, then ask again.
          await sleep((retryAfter(r) || 1000) * (1 + Math.random() / 5));
          continue;
        }
        if (!r.ok) throw new Error(`poll ${r.status}`);
        const body = await r.json();
        if (closed) return;
        failures = 0;
        h.alive();
        for (const m of body.messages || []) {
          ack = m.seq;
          h.message(m.data);
          if (closed) return;
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
  const queue = [];
  let sending = null; // the pump's promise while it runs
  const pump = async () => {
    while (queue.length) {
      const batch = queue.splice(0, MAX_BATCH);
      const msgs = batch.map((b) => b.msg);
      try {
        const r = await fetch(url, {
          method: "POST",
          headers: { ...authz(), "Content-Type": "application/json" },
          body: JSON.stringify(msgs.length === 1 ? msgs[0] : msgs),
          signal: AbortSignal.timeout(POLL_TIMEOUT),
        });
        if (!r.ok) throw Object.assign(new Error(`send: ${r.status}`), { code: r.status });
        for (const b of batch) b.resolve();
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    }
    sending = null;
  };
  const stop = () => { closed = true; ctrl.abort(); };
  return {
    session,
    send: (msg) => new Promise((resolve, reject) => {
      if (closed) { reject(new Error("session closed")); return; }
      queue.push({ msg, resolve, reject });
      if (!sending) sending = pump();
    }),
    ack: () => ack,
    close: () => {
      stop();
      fetch(url, { method: "DELETE", headers: authz(), keepalive: true }).catch(() => {});
    },
    // detach stops polling and leaves the session for the next
    // connection; it resolves with the last seq delivered once the
    // requests already handed to it have reached the server (bounded), so
    // that they are handled before what the next connection sends.
    detach: async () => {
      stop();
      if (sending) await Promise.race([sending, sleep(HANDSHAKE_TIMEOUT)]);
      return ack;
    },
  };
}

// retryAfter reads a Retry-After in seconds as ms; 0 if there is none.
function retryAfter(res) {
  const s = Number(res.headers.get("Retry-After"));
  return Number.isFinite(s) && s > 0 ? s * 1000 : 0;
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }
