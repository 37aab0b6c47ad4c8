"""Bulk load of a user snapshot into Redis as one versioned load, in-process or on Spark.

Contract (key layout in ``features.keys``, read rule in ``features.redis_store``):

- every row is written to ``encore:v3:<B>:{<user_id>}:user`` (HSET: rewriting the same version is
  harmless, so a failed load is simply run again);
- each partition opens ONE connection (``redis://``, or ``redis+cluster://`` through its first
  seed), writes pipelined batches of ``batch`` rows and retries a batch on a connection error or
  timeout (``attempts`` tries, exponential backoff from ``backoff_s``) before failing;
- only when every partition succeeded and the row counts add up does the driver write the
  complete-marker ``encore:v3:loaded:<B>`` and ``encore:v3:active = B``. A load that dies half way
  leaves ``B`` unmarked, so no server reads it.

Sync redis-py on purpose: a Spark partition runs in a plain Python worker, without an event loop.
"""

from __future__ import annotations

import importlib
import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ClusterDownError, ConnectionError, RedisError, TimeoutError, TryAgainError

from common.errors import EncoreError
from features.keys import ACTIVE_KEY, PREFIX, check_version, marker_key, pack_f32, pack_i32, user_key, version_pattern
from features.redis_store import CLUSTER_SCHEMES, is_cluster_url, marker_fields, redacted_url
from features.snapshot import UserSnapshot

Row = tuple[str, bytes, bytes, bytes]  # user_id, vec, stats, known (packed as in features.keys)
COLUMNS = ("user_id", "vec", "stats", "known")  # the DataFrame's columns, in Row order
_TRANSIENT = (ConnectionError, TimeoutError, ClusterDownError, TryAgainError)


class LoadError(EncoreError):
    """A load did not complete (a batch failed after its retries, rows went missing); the version
    stays unmarked, so servers keep reading the previous one. Names the version and the URL (redacted)."""


@dataclass(frozen=True)
class LoadResult:
    """A completed load: its version, rows, bytes written (keys + values) and write seconds."""

    version: str
    rows: int
    bytes: int
    seconds: float


def snapshot_rows(snapshot: UserSnapshot) -> Iterator[Row]:
    """The snapshot's users as packed rows, in order."""
    for i, user_id in enumerate(snapshot.user_ids):
        yield user_id, pack_f32(snapshot.vectors[i]), pack_f32(snapshot.stats[i]), pack_i32(snapshot.known(i))


def sync_client(url: str) -> redis.Redis | RedisCluster:
    """A blocking client for ``url`` (one node, or a cluster discovered from its first seed)."""
    if not is_cluster_url(url):
        return redis.Redis.from_url(url, socket_timeout=10.0, socket_connect_timeout=5.0)
    scheme, _, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    cut = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    seed = after[:cut].split(",")[0].strip()
    single = f"{CLUSTER_SCHEMES[scheme.lower()]}://{userinfo}{at}{seed}{after[cut:]}"
    return RedisCluster.from_url(single, socket_timeout=10.0, socket_connect_timeout=5.0)


@dataclass(frozen=True)
class PartitionWriter:
    """Writes one partition's rows (``mapPartitions``-shaped: yields the partition's row count).

    Picklable (Spark ships it to the workers). ``fail_after``: fault injection for tests — raise
    ``LoadError`` once this many rows of the partition are written.
    """

    url: str
    version: str
    batch: int = 1000
    attempts: int = 5
    backoff_s: float = 0.2
    fail_after: int | None = None

    def __call__(self, rows: Iterable[Sequence[Any]]) -> Iterator[int]:
        client = sync_client(self.url)
        written = 0
        try:
            it = iter(rows)
            while chunk := list(itertools.islice(it, self.batch)):
                self._write(client, chunk)
                written += len(chunk)
                if self.fail_after is not None and written >= self.fail_after:
                    raise LoadError(f"load {self.version}: injected failure after {written} rows")
        finally:
            client.close()
        yield written

    def arrow(self, batches: Iterable[Any]) -> Iterator[Any]:
        """``mapInArrow``-shaped: one partition's Arrow record batches in, one ``rows`` count batch out
        (Arrow avoids pickling every Row between the JVM and Python)."""
        pa: Any = importlib.import_module("pyarrow")

        def rows() -> Iterator[tuple[Any, ...]]:
            for b in batches:
                yield from zip(*(b.column(name).to_pylist() for name in COLUMNS), strict=True)

        yield pa.RecordBatch.from_pydict({"rows": list(self(rows()))})

    def _write(self, client: redis.Redis | RedisCluster, chunk: list[Sequence[Any]]) -> None:
        for attempt in range(1, self.attempts + 1):
            pipe = client.pipeline(transaction=False)
            for user_id, vec, stats, known in chunk:
                pipe.hset(user_key(user_id, self.version), mapping={"vec": vec, "stats": stats, "known": known})
            try:
                pipe.execute()
                return
            except _TRANSIENT as exc:
                if attempt == self.attempts:
                    raise LoadError(
                        f"load {self.version} to {redacted_url(self.url)}: batch failed {attempt} times: {exc}"
                    ) from exc
                time.sleep(self.backoff_s * 2 ** (attempt - 1))


def mark_complete(url: str, version: str, rows: int, dim: int) -> None:
    """Write load ``version``'s complete-marker and make it ``active`` (the driver, after every partition)."""
    client = sync_client(url)
    try:
        client.hset(marker_key(version), mapping=marker_fields(rows, dim))
        client.set(ACTIVE_KEY, version)
    except RedisError as exc:
        raise LoadError(f"load {version} to {redacted_url(url)}: cannot mark it complete: {exc}") from exc
    finally:
        client.close()


def _size(snapshot: UserSnapshot, version: str) -> int:
    key_bytes = sum(len(user_key(u, version).encode()) for u in snapshot.user_ids)
    _, known = snapshot.known_arrays()
    return key_bytes + snapshot.vectors.size * 4 + snapshot.stats.size * 4 + known.size * 4


def _finish(snapshot: UserSnapshot, url: str, version: str, written: int, started: float) -> LoadResult:
    seconds = time.perf_counter() - started
    if written != len(snapshot.user_ids):
        raise LoadError(f"load {version}: {written} rows written, expected {len(snapshot.user_ids)}; not marked")
    mark_complete(url, version, written, snapshot.vectors.shape[1])
    return LoadResult(version, written, _size(snapshot, version), seconds)


def load_local(
    snapshot: UserSnapshot, url: str, version: str, *, batch: int = 1000, fail_after: int | None = None
) -> LoadResult:
    """Load in this process over one connection, then mark the version complete. Raises ``LoadError``."""
    writer = PartitionWriter(url, check_version(version), batch, fail_after=fail_after)
    started = time.perf_counter()
    written = sum(writer(snapshot_rows(snapshot)))
    return _finish(snapshot, url, version, written, started)


def snapshot_frame(spark: Any, snapshot: UserSnapshot, partitions: int) -> Any:
    """The snapshot as a DataFrame ``(user_id string, vec binary, stats binary, known binary)``."""
    pa: Any = importlib.import_module("pyarrow")  # pyspark's Arrow support; no type stubs
    columns = zip(*snapshot_rows(snapshot), strict=True)
    table = pa.table(dict(zip(COLUMNS, map(list, columns), strict=True)))
    return spark.createDataFrame(table).repartition(partitions)


def load_spark(
    snapshot: UserSnapshot,
    url: str,
    version: str,
    *,
    spark: Any,
    batch: int = 1000,
    partitions: int | None = None,
    fail_after: int | None = None,
) -> LoadResult:
    """Load with ``foreachPartition`` semantics (one connection per partition; ``mapInArrow``
    returning counts, so the driver can check them), then mark complete from the driver.
    ``partitions`` defaults to the session's parallelism. Raises ``LoadError`` (a failed task
    surfaces as one, with Spark's message)."""
    writer = PartitionWriter(url, check_version(version), batch, fail_after=fail_after)
    if not snapshot.user_ids:
        return _finish(snapshot, url, version, 0, time.perf_counter())
    frame = snapshot_frame(spark, snapshot, partitions or spark.sparkContext.defaultParallelism).cache()
    frame.count()  # materialise: the write time below is the writes only
    started = time.perf_counter()
    try:
        written = sum(row["rows"] for row in frame.mapInArrow(writer.arrow, "rows long").collect())
    except Exception as exc:  # Py4J/PySpark wrap the worker's exception
        raise LoadError(f"load {version} to {redacted_url(url)}: a partition failed: {str(exc)[:500]}") from exc
    finally:
        frame.unpersist()
    return _finish(snapshot, url, version, written, started)


def loaded_versions(url: str) -> dict[str, int]:
    """Complete loads in ``url``: version → completed_ms."""
    client = sync_client(url)
    try:
        found = {}
        for key in client.scan_iter(match=f"{PREFIX}:loaded:*", count=1000):
            version = (key.decode() if isinstance(key, bytes) else key).rpartition(":")[2]
            found[version] = int(client.hget(key, "completed_ms") or 0)
        return found
    finally:
        client.close()


def gc(url: str, keep: int) -> list[str]:
    """Delete every complete load but the ``keep`` newest and ``active`` (marker first, then its
    user hashes); returns the versions deleted. A server still reading one then serves cold users."""
    if keep < 1:
        raise LoadError("--keep must be at least 1")
    versions = loaded_versions(url)
    client = sync_client(url)
    try:
        raw = client.get(ACTIVE_KEY) or b""
        active = raw.decode() if isinstance(raw, bytes) else str(raw)
        newest = sorted(versions, key=lambda v: versions[v], reverse=True)[:keep]
        doomed = sorted(set(versions) - set(newest) - {active})
        for version in doomed:
            client.delete(marker_key(version))
            batch: list[bytes] = []
            for key in client.scan_iter(match=version_pattern(version), count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    _unlink(client, batch)
            _unlink(client, batch)
        return doomed
    finally:
        client.close()


def _unlink(client: redis.Redis | RedisCluster, keys: list[bytes]) -> None:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.unlink(key)  # one key per command: keys of different users live in different slots
    pipe.execute()
    keys.clear()
