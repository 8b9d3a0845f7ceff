'use strict';
// A Node ws peer for hotline's interoperability tests.
//
// Usage:
//   node peer.js client URL CASE   connect to URL and run CASE
//   node peer.js server CASE       listen on 127.0.0.1, print the port, run
//                                  CASE on the first connection, then exit
//
// Every event is printed on stdout as one JSON object per line. The exit
// status is 0 when the conversation ended with a close, 1 on an error.

const crypto = require('crypto');
const WebSocket = require('ws');

const BIG = 16 << 20;
const PROTOCOLS = ['chat', 'superchat'];
const TIMEOUT_MS = 45000;

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
    case 'invalid-utf8':
      // A Buffer with binary: false goes out as a text frame, unchecked.
      ws.send(Buffer.from('bad \xff utf-8', 'latin1'), { binary: false });
      break;
  }
}

function converse(ws, kase, done) {
  emit({ event: 'open', subprotocol: ws.protocol });
  ws.on('message', (data, isBinary) => {
    emit(describe(data, isBinary));
    ws.send(data, { binary: isBinary });
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
  opening(ws, kase);
}

// Later permessage-deflate cases will turn perMessageDeflate on; until then
// frames go out exactly as sent.
function client(url, kase) {
  const protocols = kase.startsWith('subprotocol') ? PROTOCOLS : [];
  const ws = new WebSocket(url, protocols, {
    perMessageDeflate: false,
    maxPayload: 64 << 20,
  });
  ws.on('open', () => converse(ws, kase, () => process.exit(0)));
  ws.on('unexpected-response', (req, res) => fail(new Error('handshake: HTTP ' + res.statusCode)));
  ws.once('error', (err) => {
    if (ws.readyState === WebSocket.CONNECTING) fail(err);
  });
}

function server(kase) {
  const wss = new WebSocket.WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    perMessageDeflate: false,
    maxPayload: 64 << 20,
    handleProtocols: (offered) => {
      for (const p of offered) if (PROTOCOLS.includes(p)) return p;
      return false;
    },
  });
  wss.on('listening', () => emit({ event: 'listening', port: wss.address().port }));
  wss.on('error', fail);
  wss.once('connection', (ws) => converse(ws, kase, () => wss.close(() => process.exit(0))));
}

function main(argv) {
  setTimeout(() => fail(new Error('timeout')), TIMEOUT_MS).unref();
  if (argv.length === 3 && argv[0] === 'client') client(argv[1], argv[2]);
  else if (argv.length === 2 && argv[0] === 'server') server(argv[1]);
  else {
    process.stderr.write('usage: peer.js client URL CASE | peer.js server CASE\n');
    process.exit(2);
  }
}

main(process.argv.slice(2));
