"""A TCP proxy that adds a fixed round-trip time, for benchmarks against a local Azurite.

    python benchmarks/delay_proxy.py UPSTREAM_PORT RTT_MS    # prints its port, then serves

Every chunk is held for half the round-trip time in each direction, with no bandwidth limit,
so a request and its answer take RTT_MS longer, as across a network, and requests in flight
together overlap their waits as they would. Connection set-up is not delayed (the clients
keep their connections). Run it in its own process so its work never shares the client's
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def pump() -> None:
        while True:
            try:
                data = await reader.read(1 << 16)
            except OSError:
                data = b""
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return

    async def release() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            try:
                await writer.drain()
            except OSError:
                return

    await asyncio.gather(pump(), release())


async def serve(upstream_port: int, rtt_ms: float) -> None:
    delay = rtt_ms / 2000  # one way, in seconds

    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            cw.close()
            return
        try:
            await asyncio.gather(_pipe(cr, uw, delay), _pipe(ur, cw, delay))
        finally:
            for w in (uw, cw):
                w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), float(sys.argv[2])))
