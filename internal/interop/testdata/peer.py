#!/usr/bin/python3
"""A Python websockets peer for hotline's interoperability tests.

Usage:
    peer.py client URL CASE [DEFLATE]   connect to URL and run CASE
    peer.py server CASE [DEFLATE]       listen on 127.0.0.1, print the port,
                                        run CASE on the first connection,
                                        then exit

DEFLATE, a JSON object, turns permessage-deflate on: its keys
serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits and
clientMaxWindowBits are what the client offers or what the server imposes
(threshold, for Node, is ignored: websockets compresses every message).
Without it, frames go out exactly as sent.

A CASE named echo-BASE runs BASE's opening against an echo server (the
event loop's, EventLoop.ServeEcho): the peer does not echo what it
receives but counts it, and closes with 1000 once it has received as many
messages as its opening sent (at once if none; never in the cases where
the server ends the conversation: ECHOES).

Every event is printed on stdout as one JSON object per line. The exit
status is 0 when the conversation ended with a close handshake or a
closed connection, 1 on any other failure.

Written for the legacy asyncio API of websockets 10.x (Debian 12's
python3-websockets); that API still exists in later versions.
"""

import asyncio
import hashlib
import json
import sys

import websockets
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Opcode

BIG = 16 << 20
PROTOCOLS = ["chat", "superchat"]
TIMEOUT = 45

# Messages each opening sends, for echo-CASE; None: the server closes.
ECHOES = {
    "text": 1,
    "binary": 1,
    "fragmented": 2,
    "big": 1,
    "ping": 1,
    "deflate": 4,
    "subprotocol": 0,
    "subprotocol-client-order": 0,
    "close-peer": None,
    "close-hotline": None,
    "invalid-utf8": None,
}


def split_case(case):
    """Returns (BASE, echo) for echo-BASE, else (case, False)."""
    if case.startswith("echo-"):
        return case[len("echo-"):], True
    return case, False


def emit(**event):
    print(json.dumps(event), flush=True)


def pattern(n):
    unit = bytes(range(251))
    return (unit * (n // len(unit) + 1))[:n]


def compressible(n):
    """ASCII text that deflates well; the Go tests build the same bytes."""
    lines = []
    size = i = 0
    while size < n:
        line = f"line {i}: the quick brown fox jumps over the lazy dog\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines)[:n]


def deflate_factory(opts, client):
    """The permessage-deflate factory for the DEFLATE argument."""
    kwargs = dict(
        server_no_context_takeover=opts.get("serverNoContextTakeover", False),
        client_no_context_takeover=opts.get("clientNoContextTakeover", False),
        server_max_window_bits=opts.get("serverMaxWindowBits"),
        client_max_window_bits=opts.get("clientMaxWindowBits"),
    )
    if client:
        if kwargs["client_max_window_bits"] is None:
            # Offer client_max_window_bits without a value, as browsers do.
            kwargs["client_max_window_bits"] = True
        return ClientPerMessageDeflateFactory(**kwargs)
    return ServerPerMessageDeflateFactory(**kwargs)


def describe(msg):
    if isinstance(msg, str):
        data = msg.encode()
        event = {"event": "message", "type": "text"}
        if len(data) <= 1024:
            event["text"] = msg
    else:
        data = bytes(msg)
        event = {"event": "message", "type": "binary"}
        if len(data) <= 1024:
            event["hex"] = data.hex()
    event["len"] = len(data)
    event["sha256"] = hashlib.sha256(data).hexdigest()
    return event


async def opening(ws, case):
    """Sends what CASE asks the peer to send first."""
    if case == "text":
        await ws.send("peer: h\u00e9llo \u2713")
    elif case == "binary":
        await ws.send(bytes(range(256)))
    elif case == "fragmented":
        # An iterable is sent as one fragmented message, a frame per item.
        await ws.send(["frag", "mented ", "h\u00e9llo"])
        await ws.send([b"\x00\x01", b"\x02", b"\x03"])
    elif case == "big":
        await ws.send(pattern(BIG))
    elif case == "ping":
        pong = await ws.ping(b"peer-ping")
        await asyncio.wait_for(pong, 10)
        emit(event="pong", data="peer-ping")
        await ws.send("pinged")
    elif case == "close-peer":
        await ws.close(4000, "bye")
    elif case.startswith("deflate"):
        # Below and above any threshold, text and binary, then a compressed
        # message in three frames.
        await ws.send("peer: small \u2713")
        await ws.send(compressible(64 << 10))
        await ws.send(compressible(1 << 20).encode())
        frag = compressible(3 * 4096)
        await ws.send([frag[:4096], frag[4096:8192], frag[8192:]])
    elif case == "invalid-utf8":
        # send() only takes str for text, so write the frame directly.
        await ws.write_frame(True, Opcode.TEXT, b"bad \xff utf-8")


async def converse(ws, case):
    emit(
        event="open",
        subprotocol=ws.subprotocol or "",
        extensions=ws.response_headers.get("Sec-WebSocket-Extensions", ""),
    )
    case, echo = split_case(case)
    await opening(ws, case)
    want = ECHOES.get(case) if echo else None
    got = 0
    try:
        if want == 0:
            await ws.close(1000)
        async for msg in ws:
            emit(**describe(msg))
            if not echo:
                await ws.send(msg)
                continue
            got += 1
            if want is not None and got == want:
                await ws.close(1000)
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    emit(event="close", code=ws.close_code, reason=ws.close_reason or "")


async def client(url, case, deflate):
    protocols = PROTOCOLS if split_case(case)[0].startswith("subprotocol") else None
    extensions = None
    if deflate is not None:
        extensions = [deflate_factory(deflate, client=True)]
    async with websockets.connect(
        url,
        subprotocols=protocols,
        max_size=None,
        ping_interval=None,
        close_timeout=5,
        compression=None,
        extensions=extensions,
    ) as ws:
        await converse(ws, case)


async def server(case, deflate):
    done = asyncio.get_running_loop().create_future()

    async def handler(ws):
        try:
            await converse(ws, case)
        except Exception as exc:  # reported, then the process fails
            if not done.done():
                done.set_exception(exc)
            raise
        if not done.done():
            done.set_result(None)

    async with websockets.serve(
        handler,
        "127.0.0.1",
        0,
        subprotocols=PROTOCOLS,
        max_size=None,
        ping_interval=None,
        close_timeout=5,
        compression=None,
        extensions=None if deflate is None else [deflate_factory(deflate, client=False)],
    ) as srv:
        port = srv.sockets[0].getsockname()[1]
        emit(event="listening", port=port)
        await done


def main(argv):
    if len(argv) in (4, 5) and argv[1] == "client":
        coro = client(argv[2], argv[3], json.loads(argv[4]) if len(argv) == 5 else None)
    elif len(argv) in (3, 4) and argv[1] == "server":
        coro = server(argv[2], json.loads(argv[3]) if len(argv) == 4 else None)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        asyncio.run(asyncio.wait_for(coro, TIMEOUT))
    except Exception as exc:
        emit(event="error", error=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
