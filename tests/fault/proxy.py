"""A TCP proxy for fault injection: delays every upstream→client chunk, or holds traffic entirely.

Runs its own asyncio loop on a daemon thread. ``latency_s`` can be changed at any time (it
applies to chunks read after the change; order is always preserved); ``pause()`` holds all
traffic in both directions until ``resume()``. Used to put a slow Redis behind a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any


class LatencyProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, latency_s: float = 0.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.latency_s = latency_s
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="latency-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._running: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    def set_latency(self, seconds: float) -> None:
        self.latency_s = seconds

    def pause(self) -> None:
        self._loop.call_soon_threadsafe(self._flag().clear)

    def resume(self) -> None:
        self._loop.call_soon_threadsafe(self._flag().set)

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()

    def _flag(self) -> asyncio.Event:
        assert self._running is not None, "proxy not started"
        return self._running

    async def _start(self) -> None:
        self._running = asyncio.Event()
        self._running.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()
            return
        self._spawn(self._connection(client_r, client_w, upstream_r, upstream_w))

    async def _connection(
        self,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        upstream_r: asyncio.StreamReader,
        upstream_w: asyncio.StreamWriter,
    ) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def requests() -> None:  # client → upstream, immediately (unless paused)
            while data := await client_r.read(65536):
                await self._flag().wait()
                upstream_w.write(data)
                await upstream_w.drain()

        async def replies_in() -> None:  # upstream → queue, stamped with the time it may leave
            while data := await upstream_r.read(65536):
                await queue.put((loop.time() + self.latency_s, data))
            await queue.put((loop.time() + self.latency_s, b""))

        async def replies_out() -> None:  # queue → client, in order, after the delay
            while True:
                due, data = await queue.get()
                await self._flag().wait()
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
