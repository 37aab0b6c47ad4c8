"""Every serving process follows the experiments store's head (``serving.experiments.store``).

``StoreFollower`` reads the head every ``interval_s`` (default 0.5 s, so a commit is served within
about a second). A new revision is parsed and validated against the models of the bundle serving
now, then applied in one reference swap; a revision that does not validate is refused (logged
with every problem, ``encore_experiments_reloads_total{outcome="rejected"}``) and the previous one
keeps serving. When the store cannot be read the process keeps serving its last good revision and
says so: one warning when it is lost, one line when it is back, ``encore_experiments_store_up`` 0
meanwhile. ``encore_experiments_revision`` is the revision this process serves (0: none yet);
``encore_experiments_propagation_seconds`` observes, per applied revision, commit → served here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection

from prometheus_client import Counter, Gauge, Histogram

from serving.experiments.config import ExperimentConfigError, ExperimentsConfig, parse_experiments
from serving.experiments.store import ExperimentStore, Revision, StoreUnavailable

log = logging.getLogger(__name__)


class StoreFollower:
    """Applies each new valid revision of ``store`` through ``apply``."""

    def __init__(
        self,
        store: ExperimentStore,
        known_models: Callable[[], Collection[str]],
        apply: Callable[[ExperimentsConfig], None],
        *,
        reloads: Counter,
        revision_gauge: Gauge,
        store_up: Gauge,
        propagation: Histogram | None = None,
        interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._known_models = known_models
        self._apply = apply
        self._reloads = reloads
        self._revision_gauge = revision_gauge
        self._store_up = store_up
        self._propagation = propagation
        self._clock = clock
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.revision = 0  # serving
        self.seen = 0  # newest head looked at (refused revisions included)
        self.reachable = True
        self.last_error = ""

    async def poll_once(self) -> bool | None:
        """True: a new revision was applied; False: refused or the store is unreachable; None: no change."""
        try:
            head = await self._store.head()
            if head == self.seen:
                self._reachable(True)
                return None
            revision = await self._store.get(head)
        except StoreUnavailable as exc:
            self._reachable(False, str(exc))
            return False
        self._reachable(True)
        self.seen = head
        return self._try_apply(revision)

    def _try_apply(self, revision: Revision) -> bool:
        source = f"{self._store.url} revision {revision.number}"
        try:
            config = parse_experiments(revision.document, source, frozenset(self._known_models()))
        except ExperimentConfigError as exc:
            self._reloads.labels("rejected").inc()
            self.last_error = str(exc)
            log.error("experiments %s refused, still serving revision %d: %s", source, self.revision, exc)
            return False
        self._apply(config)
        self.revision = revision.number
        self._revision_gauge.set(revision.number)
        if self._propagation is not None:  # commit → served here (clocks of one fleet, NTP-synced)
            self._propagation.observe(max(0.0, self._clock() - revision.committed_at))
        self._reloads.labels("applied").inc()
        log.info(
            "experiments: serving %s (%d experiments; by %s: %s)",
            source,
            len(config.all_experiments),
            revision.author,
            revision.reason,
        )
        return True

    def _reachable(self, ok: bool, error: str = "") -> None:
        if ok and not self.reachable:
            log.info("experiments store %s reachable again", self._store.url)
        elif not ok and self.reachable:
            log.warning("experiments store unreachable, still serving revision %d: %s", self.revision, error)
        if not ok:
            self.last_error = error
        self.reachable = ok
        self._store_up.set(1 if ok else 0)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="experiments-store-follower")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.poll_once()
            except Exception:  # never let the follower die; what was serving keeps serving
                log.exception("experiments store follower failed; still serving revision %d", self.revision)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._store.close()
