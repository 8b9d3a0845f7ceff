#!/usr/bin/python3
"""A Python websockets (10.x legacy asyncio API) superchat client for the
event-loop server test: subscribe, receive a publication, ping, publish
a message of 100 KB in fragments, then close with 1000.

Usage: evloop_client.py URL TOKEN
Prints one JSON line per step; exits 0 when every step passed.
"""

import asyncio
import json
import sys

import websockets


def emit(**ev):
    print(json.dumps(ev), flush=True)


async def main(url, token):
    async with websockets.connect(
        url,
        subprotocols=["superchat"],
        extra_headers={"Authorization": "Bearer " + token},
        max_size=1 << 20,
    ) as ws:
        emit(step="open", subprotocol=ws.subprotocol,
             extensions=[e.name for e in ws.extensions])
        await ws.send(json.dumps({"id": 1, "op": "subscribe", "channel": "chat:py"}))
        while True:
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m.get("id") == 1:
                emit(step="subscribed", error=m.get("error"))
                break
        pong = await ws.ping(b"evloop")
        await asyncio.wait_for(pong, 10)
        emit(step="pong")
        # A fragmented text message: websockets sends an iterable as
        # one message in several frames.
        text = json.dumps({"id": 2, "op": "publish", "channel": "chat:py",
                           "data": "x" * 30000})
        parts = [text[i:i + 7000] for i in range(0, len(text), 7000)]
        await ws.send(iter(parts))
        got_reply = got_pub = False
        while not (got_reply and got_pub):
            m = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if m.get("id") == 2:
                got_reply = True
                emit(step="published", error=m.get("error"))
            elif m.get("push", {}).get("offset"):
                got_pub = len(m["push"]["data"]) == 30000
                emit(step="publication", size=len(m["push"]["data"]))
        await ws.close(1000, "done")
        emit(step="closed", code=ws.close_code, reason=ws.close_reason)


try:
    asyncio.run(main(sys.argv[1], sys.argv[2]))
except Exception as e:  # reported, and a non-zero exit
    emit(step="error", error=repr(e))
    sys.exit(1)
