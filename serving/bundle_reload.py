"""Hot reload of the artifact bundle without dropping or stalling requests.

``--bundle`` may point at a symlink (``bundles/current`` → ``bundles/<version>``). The watcher
polls the resolved path and its manifest's mtime every ``interval_s``, and reloads on demand
(``trigger()``, wired to SIGHUP). A new bundle is loaded, validated (checksums, schema, models,
experiments' models) and warmed off the request path, then swapped in with one reference
assignment. A broken bundle is refused with one log line naming the problem and
``encore_bundle_reloads_total{outcome="rejected"}``; the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from models.bundle import BundleError
from serving.errors import ConfigError

log = logging.getLogger(__name__)


def _signature(path: Path) -> tuple[str, int] | None:
    try:
        resolved = path.resolve()
        return str(resolved), (resolved / "manifest.json").stat().st_mtime_ns
    except OSError:
        return None


class BundleReloader:
    """Watches ``path``; calls ``reload(resolved_path)`` when it points at a different bundle."""

    def __init__(
        self,
        path: Path,
        reload: Callable[[Path], Awaitable[Any]],
        reloads: Counter,
        *,
        interval_s: float = 5.0,
    ) -> None:
        self._path = path
        self._reload = reload
        self._reloads = reloads
        self._interval_s = interval_s
        self._signature = _signature(path)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error = ""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="bundle-reloader")

    def trigger(self) -> None:
        """Reload now, even if the path looks unchanged."""
        self._signature = None
        self._wake.set()

    async def reload_now(self) -> bool | None:
        """Reload immediately, changed or not: True applied, False refused, None nothing to read."""
        self._signature = None
        return await self.reload_if_changed()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def reload_if_changed(self) -> bool | None:
        """True when a new bundle was swapped in, False when refused, None when nothing changed."""
        signature = _signature(self._path)
        if signature is None or signature == self._signature:
            return None
        self._signature = signature
        target = Path(signature[0])
        try:
            await self._reload(target)
        except (BundleError, ConfigError) as exc:
            self._reloads.labels("rejected").inc()
            self.last_error = str(exc)
            log.error("bundle reload refused, still serving the previous bundle: %s", exc)
            return False
        self._reloads.labels("applied").inc()
        log.info("bundle reloaded from %s", target)
        return True

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.reload_if_changed()
            except Exception:  # never let the watcher die; the old bundle keeps serving
                self._reloads.labels("rejected").inc()
                log.exception("bundle reload failed; still serving the previous bundle")
