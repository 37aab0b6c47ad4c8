"""Polling hot reload, shared by the experiments file and the bundle.

A reloader polls a cheap *signature* of its source (file mtime and size, a resolved symlink)
every ``interval_s`` and reloads when it changes, or at once on ``trigger()`` (SIGHUP) or
``reload_now()`` (admin). Loading and validation happen off the request path; only a valid result
is applied. A refused source is logged with its problem, counted as
``outcome="rejected"`` and kept as ``last_error``; whatever was serving keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import ClassVar

from prometheus_client import Counter

log = logging.getLogger(__name__)


class PollingReloader(ABC):
    #: What is reloaded, for log lines ("experiments", "bundle").
    what: ClassVar[str]
    #: Errors that mean "this source is invalid": refused, not crashed on.
    refusals: ClassVar[tuple[type[Exception], ...]]
    #: A vanished source is "no change" (e.g. a symlink mid-swap) rather than a refusal.
    ignore_missing: ClassVar[bool] = False

    def __init__(self, reloads: Counter, interval_s: float) -> None:
        self._reloads = reloads
        self._interval_s = interval_s
        self._signature = self._current()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.last_error = ""

    @abstractmethod
    def _current(self) -> Hashable | None:
        """The source's signature now; None when it cannot be read."""

    @abstractmethod
    async def _load_and_apply(self, signature: Hashable | None) -> str:
        """Load, validate and apply the source; return a short description for the log."""

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name=f"{self.what}-reloader")

    def trigger(self) -> None:
        """Reload at the next turn, changed or not."""
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
        """True when a new version was applied, False when refused, None when nothing changed."""
        signature = self._current()
        if signature == self._signature or (signature is None and self.ignore_missing):
            return None
        self._signature = signature
        try:
            description = await self._load_and_apply(signature)
        except self.refusals as exc:
            self._reloads.labels("rejected").inc()
            self.last_error = str(exc)
            log.error("%s reload refused, still serving the previous %s: %s", self.what, self.what, exc)
            return False
        self._reloads.labels("applied").inc()
        log.info("%s reloaded: %s", self.what, description)
        return True

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.reload_if_changed()
            except Exception:  # never let the watcher die; what was serving keeps serving
                self._reloads.labels("rejected").inc()
                log.exception("%s reload failed; still serving the previous %s", self.what, self.what)
