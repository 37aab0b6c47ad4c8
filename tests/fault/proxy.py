"""A TCP proxy for fault injection: delays every upstream→client chunk, or holds traffic entirely.

It runs in its own process (spawned, so it neither shares the test's GIL with the load threads nor
inherits their gRPC state): a delay of a few milliseconds stays a few milliseconds. The latency
and the pause flag live in shared memory, so ``set_latency``, ``pause`` and ``resume`` act at
once: a new latency applies to chunks read after the change (order is always preserved), and a
pause holds all traffic in both directions until ``resume``. Used to put a slow Redis behind a
real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized

PAUSE_POLL_S = 0.002


class LatencyProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, latency_s: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        ctx = multiprocessing.get_context("spawn")
        self._latency: Synchronized[float] = ctx.Value("d", latency_s)
        self._paused: Synchronized[int] = ctx.Value("i", 0)
        self._connections: Synchronized[int] = ctx.Value("i", 0)
        self._ready, child_end = ctx.Pipe(duplex=False)
        self._process: BaseProcess = ctx.Process(
            target=_run,
            args=(self.upstream, self._latency, self._paused, self._connections, child_end),
            name="latency-proxy",
            daemon=True,
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def latency_s(self) -> float:
        return float(self._latency.value)

    @property
    def connections(self) -> int:
        """Client connections accepted so far."""
        return int(self._connections.value)

    def start(self) -> None:
        self._process.start()
        if not self._ready.poll(30):
            self.stop()
            raise RuntimeError("latency proxy did not start")
        self.port = int(self._ready.recv())

    def set_latency(self, seconds: float) -> None:
        self._latency.value = seconds

    def pause(self) -> None:
        self._paused.value = 1

    def resume(self) -> None:
        self._paused.value = 0

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join(timeout=10)


def _run(
    upstream: tuple[str, int],
    latency: Synchronized[float],
    paused: Synchronized[int],
    connections: Synchronized[int],
    ready: Connection,
) -> None:
    asyncio.run(_Proxy(upstream, latency, paused, connections).serve(ready))


class _Proxy:
    def __init__(
        self,
        upstream: tuple[str, int],
        latency: Synchronized[float],
        paused: Synchronized[int],
        connections: Synchronized[int],
    ) -> None:
        self._upstream = upstream
        self._latency = latency
        self._paused = paused
        self._connections = connections

    async def serve(self, ready: Connection) -> None:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        ready.send(int(server.sockets[0].getsockname()[1]))
        async with server:
            await server.serve_forever()

    async def _unpaused(self) -> None:
        while self._paused.value:
            await asyncio.sleep(PAUSE_POLL_S)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._connections.value += 1
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_w.close()
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def requests() -> None:  # client → upstream, immediately (unless paused)
            while data := await client_r.read(65536):
                await self._unpaused()
                upstream_w.write(data)
                await upstream_w.drain()

        async def replies_in() -> None:  # upstream → queue, stamped with the time it may leave
            while data := await upstream_r.read(65536):
                await queue.put((loop.time() + self._latency.value, data))
            await queue.put((loop.time() + self._latency.value, b""))

        async def replies_out() -> None:  # queue → client, in order, after the delay
            while True:
                due, data = await queue.get()
                await self._unpaused()
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if not data:
                    return
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.ensure_future(c) for c in (requests(), replies_in(), replies_out())]
        try:
            # either side closing (or failing) ends the connection
            await asyncio.wait([tasks[0], tasks[2]], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for writer in (client_w, upstream_w):
                writer.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await writer.wait_closed()
