// The Socket.IO peer of pushbench: each client joins the room named in its
// connection URL, and POST /publish?room=R broadcasts the JSON body to it.
const http = require('http');
const { Server } = require('socket.io');
const srv = http.createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (req.method === 'GET' && u.pathname === '/gc') { global.gc(); res.end('ok'); return; }
  if (req.method !== 'POST' || u.pathname !== '/publish') { res.writeHead(404); res.end(); return; }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => { io.to(u.searchParams.get('room')).emit('m', JSON.parse(Buffer.concat(chunks))); res.end('ok'); });
});
const io = new Server(srv, { transports: ['websocket'] });
io.on('connection', (s) => { s.join(s.handshake.query.room); s.emit('joined'); });
srv.listen(+process.env.PORT, '127.0.0.1');
