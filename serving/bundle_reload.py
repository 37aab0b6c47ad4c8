"""Hot reload of the artifact bundle without dropping or stalling requests.

``--bundle`` may point at a symlink (``bundles/current`` → ``bundles/<version>``). The reloader
polls the resolved path and its manifest's mtime every ``interval_s`` and reloads on demand
(SIGHUP, admin). A new bundle is loaded, validated (checksums, schema, models, the experiments'
models) and warmed off the request path by ``reload``, then swapped in with one reference
assignment. A broken bundle is refused with one log line naming the problem and
``encore_bundle_reloads_total{outcome="rejected"}``; the old one keeps serving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from models.bundle import BundleError
from serving.errors import ConfigError
from serving.reloader import PollingReloader


class BundleReloader(PollingReloader):
    """Watches ``path``; calls ``reload(resolved_path)`` when it points at a different bundle."""

    what = "bundle"
    refusals = (BundleError, ConfigError)
    ignore_missing = True  # a symlink mid-swap is not a broken bundle

    def __init__(
        self, path: Path, reload: Callable[[Path], Awaitable[Any]], reloads: Counter, *, interval_s: float = 5.0
    ) -> None:
        self._path = path
        self._reload = reload
        super().__init__(reloads, interval_s)

    def _current(self) -> Hashable | None:
        try:
            resolved = self._path.resolve()
            return str(resolved), (resolved / "manifest.json").stat().st_mtime_ns
        except OSError:
            return None

    async def _load_and_apply(self, signature: Hashable | None) -> str:
        assert isinstance(signature, tuple)
        target = Path(signature[0])
        await self._reload(target)
        return f"now serving {target}"
