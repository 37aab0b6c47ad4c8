"""Hot reload of the experiments file: validate in the background, swap atomically, or refuse.

Polls the file's (mtime, size) every ``interval_s`` and reloads on demand (SIGHUP, admin). A new
file is parsed and fully validated off the event loop against the models of the bundle serving
now; only a valid configuration reaches ``apply`` — an invalid one is refused with every problem
logged and ``encore_experiments_reloads_total{outcome="rejected"}``, and the old configuration
keeps serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Hashable
from pathlib import Path

from prometheus_client import Counter

from serving.experiments.config import ExperimentConfigError, ExperimentsConfig, load_experiments
from serving.reloader import PollingReloader


class ExperimentsReloader(PollingReloader):
    """Watches ``path``; calls ``apply(config)`` with each new valid configuration."""

    what = "experiments"
    refusals = (ExperimentConfigError,)

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
        super().__init__(reloads, interval_s)

    def _current(self) -> Hashable | None:
        try:
            stat = self._path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def _load_and_apply(self, signature: Hashable | None) -> str:
        config = await asyncio.to_thread(load_experiments, self._path, frozenset(self._known_models()))
        self._apply(config)
        return f"{len(config.all_experiments)} experiments from {self._path}"
