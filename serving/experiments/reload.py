"""Hot reload of the experiments file: validate in the background, swap atomically, or refuse.

The watcher polls the file's (mtime, size) every ``interval_s`` and also reloads on demand
(``trigger()``, wired to SIGHUP). A new file is parsed and fully validated off the event loop;
only a valid configuration reaches ``apply`` — an invalid one is refused with every problem
logged and ``encore_experiments_reloads_total{outcome="rejected"}`` incremented, and the old
configuration keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from pathlib import Path

from prometheus_client import Counter

from serving.experiments.config import ExperimentConfigError, ExperimentsConfig, load_experiments

log = logging.getLogger(__name__)


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class ExperimentsReloader:
    """Watches ``path``; calls ``apply(config)`` with each new valid configuration."""

    def __init__(
        self,
        path: Path,
        known_models: Callable[[], Collection[str]],
        apply: Callable[[ExperimentsConfig], None],
        reloads: Counter,
        *,
        interval_s: float = 2.0,
    ) -> None:
        self._path = path
        self._known_models = known_models  # of the bundle serving now (bundles reload too)
        self._apply = apply
        self._reloads = reloads
        self._interval_s = interval_s
        self._signature = _signature(path)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error = ""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="experiments-reloader")

    def trigger(self) -> None:
        """Reload now (e.g. on SIGHUP), even if the file looks unchanged."""
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
        """Reload when the file changed: True applied, False refused, None unchanged."""
        signature = _signature(self._path)
        if signature == self._signature:
            return None
        self._signature = signature
        try:
            config = await asyncio.to_thread(load_experiments, self._path, frozenset(self._known_models()))
        except ExperimentConfigError as exc:
            self._reloads.labels("rejected").inc()
            self.last_error = str(exc)
            log.error("experiments reload refused, still serving the previous configuration: %s", exc)
            return False
        self._apply(config)
        self._reloads.labels("applied").inc()
        log.info("experiments reloaded from %s: %d experiments", self._path, len(config.all_experiments))
        return True

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.reload_if_changed()
            except Exception:  # never let the watcher die; the old config keeps serving
                log.exception("experiments reload failed")
