'use strict';
// A Node ws peer for hotline's interoperability tests.
//
// Usage:
//   node peer.js client URL CASE [DEFLATE]   connect to URL and run CASE
//   node peer.js server CASE [DEFLATE]       listen on 127.0.0.1, print the
//                                            port, run CASE on the first
//                                            connection, then exit
//
// DEFLATE, a JSON object, turns permessage-deflate on and is passed as ws's
// perMessageDeflate option (serverNoContextTakeover, clientNoContextTakeover,
// serverMaxWindowBits, clientMaxWindowBits, threshold). Without it, frames
// go out exactly as sent.
//
// A CASE named echo-BASE runs BASE's opening against an echo server (the
// event loop's, EventLoop.ServeEcho): the peer does not echo what it
// receives but counts it, and closes with 1000 once it has received as many
// messages as its opening sent (at once if none; never in the cases where
// the server ends the conversation: ECHOES).
//
// Every event is printed on stdout as one JSON object per line. The exit
// status is 0 when the conversation ended with a close, 1 on an error.

const crypto = require('crypto');
const WebSocket = require('ws');

const BIG = 16 << 20;
const PROTOCOLS = ['chat', 'superchat'];
const TIMEOUT_MS = 45000;

// Messages each opening sends, for echo-CASE; null: the server closes.
const ECHOES = {
  text: 1,
  binary: 1,
  fragmented: 2,
  big: 1,
  ping: 1,
  deflate: 4,
  subprotocol: 0,
  'subprotocol-client-order': 0,
  'close-peer': null,
  'close-hotline': null,
  'invalid-utf8': null,
};

// splitCase returns [BASE, true] for echo-BASE, else [kase, false].
function splitCase(kase) {
  if (kase.startsWith('echo-')) return [kase.slice('echo-'.length), true];
  return [kase, false];
}

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function fail(err) {
  emit({ event: 'error', error: String(err && err.stack ? err.stack : err) });
  process.exitCode = 1;
  process.exit();
}

function pattern(n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

// compressible is ASCII text that deflates well; the Go tests build the
// same bytes.
function compressible(n) {
  const lines = [];
  let size = 0;
  for (let i = 0; size < n; i++) {
    const line = `line ${i}: the quick brown fox jumps over the lazy dog\n`;
    lines.push(line);
    size += line.length;
  }
  return lines.join('').slice(0, n);
}

function describe(data, isBinary) {
  const event = { event: 'message', type: isBinary ? 'binary' : 'text' };
  if (data.length <= 1024) {
    if (isBinary) event.hex = data.toString('hex');
    else event.text = data.toString('utf8');
  }
  event.len = data.length;
  event.sha256 = crypto.createHash('sha256').update(data).digest('hex');
  return event;
}

// opening sends what the case asks the peer to send first.
function opening(ws, kase) {
  switch (kase) {
    case 'text':
      ws.send('peer: h\u00e9llo \u2713');
      break;
    case 'binary': {
      const b = Buffer.alloc(256);
      for (let i = 0; i < 256; i++) b[i] = i;
      ws.send(b);
      break;
    }
    case 'fragmented': {
      // fin: false starts or continues a message; the second fragment ends
      // inside the two bytes of "é" to exercise incremental UTF-8 checks.
      const text = Buffer.from('fragmented h\u00e9llo', 'utf8');
      ws.send(text.subarray(0, 5), { binary: false, fin: false });
      ws.send(text.subarray(5, 13), { binary: false, fin: false });
      ws.send(text.subarray(13), { binary: false, fin: true });
      ws.send(Buffer.from([0, 1]), { binary: true, fin: false });
      ws.send(Buffer.from([2]), { binary: true, fin: false });
      ws.send(Buffer.from([3]), { binary: true, fin: true });
      break;
    }
    case 'big':
      ws.send(pattern(BIG));
      break;
    case 'ping':
      ws.ping('peer-ping');
      break;
    case 'close-peer':
      ws.close(4000, 'bye');
      break;
    case 'deflate': {
      // Below and above any threshold, text and binary, then a compressed
      // message in three frames.
      ws.send('peer: small \u2713');
      ws.send(compressible(64 << 10));
      ws.send(Buffer.from(compressible(1 << 20)), { binary: true });
      const frag = Buffer.from(compressible(3 * 4096));
      ws.send(frag.subarray(0, 4096), { binary: false, fin: false });
      ws.send(frag.subarray(4096, 8192), { binary: false, fin: false });
      ws.send(frag.subarray(8192), { binary: false, fin: true });
      break;
    }
    case 'invalid-utf8':
      // A Buffer with binary: false goes out as a text frame, unchecked.
      ws.send(Buffer.from('bad \xff utf-8', 'latin1'), { binary: false });
      break;
  }
}

// converse runs the case on ws; extensions is the negotiated
// Sec-WebSocket-Extensions header as sent or received.
function converse(ws, full, extensions, done) {
  const [kase, echo] = splitCase(full);
  const want = echo && kase in ECHOES ? ECHOES[kase] : null;
  let got = 0;
  emit({ event: 'open', subprotocol: ws.protocol, extensions: extensions || '' });
  ws.on('message', (data, isBinary) => {
    emit(describe(data, isBinary));
    if (!echo) {
      ws.send(data, { binary: isBinary });
      return;
    }
    got++;
    if (want !== null && got === want) ws.close(1000);
  });
  ws.on('ping', (data) => emit({ event: 'ping', data: data.toString() }));
  ws.on('pong', (data) => {
    emit({ event: 'pong', data: data.toString() });
    if (kase === 'ping') ws.send('pinged');
  });
  ws.on('error', (err) => emit({ event: 'error', error: String(err) }));
  ws.on('close', (code, reason) => {
    emit({ event: 'close', code, reason: reason.toString() });
    done();
  });
  opening(ws, kase.startsWith('deflate') ? 'deflate' : kase);
  if (want === 0) ws.close(1000);
}

function client(url, kase, deflate) {
  const protocols = splitCase(kase)[0].startsWith('subprotocol') ? PROTOCOLS : [];
  const ws = new WebSocket(url, protocols, {
    perMessageDeflate: deflate || false,
    maxPayload: 64 << 20,
  });
  let extensions = '';
  ws.on('upgrade', (res) => {
    extensions = res.headers['sec-websocket-extensions'] || '';
  });
  ws.on('open', () => converse(ws, kase, extensions, () => process.exit(0)));
  ws.on('unexpected-response', (req, res) => fail(new Error('handshake: HTTP ' + res.statusCode)));
  ws.once('error', (err) => {
    if (ws.readyState === WebSocket.CONNECTING) fail(err);
  });
}

function server(kase, deflate) {
  const wss = new WebSocket.WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: deflate || false,
    maxPayload: 64 << 20,
    handleProtocols: (offered) => {
      for (const p of offered) if (PROTOCOLS.includes(p)) return p;
      return false;
    },
  });
  wss.on('listening', () => emit({ event: 'listening', port: wss.address().port }));
  wss.on('error', fail);
  let extensions = '';
  wss.on('headers', (headers) => {
    const prefix = 'sec-websocket-extensions:';
    for (const h of headers) {
      if (h.toLowerCase().startsWith(prefix)) extensions = h.slice(prefix.length).trim();
    }
  });
  wss.once('connection', (ws) =>
    converse(ws, kase, extensions, () => wss.close(() => process.exit(0))),
  );
}

function main(argv) {
  setTimeout(() => fail(new Error('timeout')), TIMEOUT_MS).unref();
  if ((argv.length === 3 || argv.length === 4) && argv[0] === 'client') {
    client(argv[1], argv[2], argv.length === 4 ? JSON.parse(argv[3]) : null);
  } else if ((argv.length === 2 || argv.length === 3) && argv[0] === 'server') {
    server(argv[1], argv.length === 3 ? JSON.parse(argv[2]) : null);
  } else {
    process.stderr.write('usage: peer.js client URL CASE [DEFLATE] | peer.js server CASE [DEFLATE]\n');
    process.exit(2);
  }
}

main(process.argv.slice(2));
