# A silent superchat client, as a browser tab behaves: Python websockets
# with its own pings off (ping_interval=None). It subscribes to a quiet
# channel and stays idle: it sends nothing (the library only answers the
# server's pings). Then it publishes once and waits for the push. Prints
# one line: "ok <seconds idle>" or "fail <reason>".
import asyncio, json, sys, time
import websockets

async def main(url, idle):
    async with websockets.connect(url, subprotocols=["superchat"], ping_interval=None) as c:
        async def reply(rid, timeout):
            while True:
                m = json.loads(await asyncio.wait_for(c.recv(), timeout))
                if m.get("id") == rid:
                    return m
        await c.send(json.dumps({"id": 1, "op": "connect"}))
        await reply(1, 10)
        await c.send(json.dumps({"id": 2, "op": "subscribe", "channel": "chat:quiet"}))
        r = await reply(2, 10)
        if "error" in r:
            print("fail subscribe", r)
            return
        start = time.monotonic()
        deadline = start + idle
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    await asyncio.wait_for(c.recv(), left)  # presence events only
                except asyncio.TimeoutError:
                    break
        except websockets.ConnectionClosed as e:
            print("fail closed after %.1fs idle: code=%s reason=%r" % (time.monotonic() - start, e.code, e.reason))
            return
        waited = time.monotonic() - start
        await c.send(json.dumps({"id": 3, "op": "publish", "channel": "chat:quiet", "data": "after idle"}))
        while True:
            m = json.loads(await asyncio.wait_for(c.recv(), 10))
            if "id" not in m and "after idle" in json.dumps(m):
                print("ok %.1f" % waited)
                return

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
