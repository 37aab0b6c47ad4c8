"""Redis feature store: async client over a connection pool, one pipelined round trip per call.

Retries are off: on the request path a failed or slow call falls back at once (the pipeline
degrades to cold-start features); the per-call timeout bounds every operation.

One node or a Redis Cluster, chosen by the URL scheme (see ``RedisFeatureStore.from_url``). On a
cluster a user's keys share one hash slot (``features.keys``), so ``get_user`` and
``record_events`` are each one round trip to one node; ``load_snapshot``'s pipelines are split
by node and sent to the nodes concurrently. Nodes are found from the seed list; redis-py
refreshes the slot map after MOVED redirects and some connection errors.

Versioned loads (``version`` given, as ``encore serve`` does with its bundle's version): user
hashes are read from load ``R`` (``features.keys.user_key(u, R)``), where ``R`` is chosen by the
switch rule, checked at start-up, on ``follow`` (bundle reload) and every ``version_poll_s`` until
``R`` is the wanted version:

1. the wanted version (the served bundle's) once its marker ``encore:v3:loaded:<B>`` exists with
   the bundle's dim;
2. else the version already being read (a half-done load is never read; the previous one stays);
3. else, with nothing read yet, the version named by ``encore:v3:active`` when its marker exists
   with the same dim;
4. else none: no user hash is read, every user is a cold user (plays/skips still are).

Without ``version`` the unversioned legacy keys are read and written (tests, offline evaluation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

from common.errors import EncoreError
from features.keys import (
    ACTIVE_KEY,
    check_version,
    marker_key,
    pack_f32,
    pack_i32,
    plays_key,
    skips_key,
    unpack_f32,
    unpack_i32,
    user_key,
)
from features.schema import RECENT_PLAYS_MAX, USER_STATS
from features.snapshot import UserSnapshot
from features.store import FeatureStoreError, FeatureStoreTimeout, UserRecord

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_QUERY_PASSWORD = re.compile(r"([?&;]password=)[^&#;]*", re.IGNORECASE)
_HOST_PART = re.compile(r"\[[^\]]*\]|:[^,/?#]*")  # an [IPv6] literal or a ":port"
_SCHEMES = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)
log = logging.getLogger(__name__)


class RedisURLError(EncoreError, ValueError):
    """A Redis URL that cannot be parsed; the message shows it with the password redacted."""


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def redacted_url(url: str) -> str:
    """``url`` safe for logs: the password (``user:password@`` or ``?password=``) becomes ``***``.

    Errs on the side of hiding: everything between the first ``:`` of the userinfo and the last
    ``@`` is treated as the password, so an unencoded ``/``, ``?`` or ``@`` in it cannot leak.
    """
    head, sep, rest = url.partition("://")
    if not sep:
        head, rest = "", url
    userinfo, at, hosts = rest.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        rest = f"{user}:***@{hosts}" if colon else f"{userinfo}@{hosts}"
    else:  # "redis://:secret" (host forgotten): the password would parse as a port
        rest = _HOST_PART.sub(lambda m: ":***" if m[0] in _non_numeric_ports(rest) else m[0], rest)
    return head + sep + _QUERY_PASSWORD.sub(r"\1***", rest)


def _secrets_in(url: str) -> list[str]:
    """The raw and decoded passwords in ``url`` (to scrub them from third-party messages)."""
    rest = url.partition("://")[2] or url
    userinfo, at, _ = rest.rpartition("@")
    found = [userinfo.partition(":")[2]] if at else [p[1:] for p in _non_numeric_ports(rest)]
    found += [v for k, v in parse_qsl(rest.partition("?")[2]) if k.lower() == "password"]
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def _non_numeric_ports(netloc: str) -> set[str]:
    """``:xyz`` parts of a userinfo-less netloc that are not ports (a password missing its ``@``)."""
    netloc = re.split(r"[/?#]", netloc, maxsplit=1)[0]
    parts = (m[0] for m in _HOST_PART.finditer(netloc))
    return {p for p in parts if p.startswith(":") and len(p) > 1 and not p[1:].isdigit()}


class RedisFeatureStore:
    """``FeatureStore`` on Redis (key layout in ``features.keys``). Built once, shared by requests.

    On a cluster ``record_events`` is not MULTI/EXEC: redis-py 8.1's async cluster transaction
    queues every command through a new thread running its own event loop (blocking ours; and on
    a client that must (re)discover the cluster, the connections it opens belong to that
    short-lived loop and break). It is a plain pipeline instead: the user's LPUSH/LTRIM pairs
    still go to one node in one round trip and run in order, but not atomically, so a reader may
    see a list between its LPUSH and LTRIM (``get_user`` reads at most ``RECENT_PLAYS_MAX``
    anyway), and a connection lost mid-pipeline can leave plays without the skips, or a list
    over the cap until the next write trims it.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        dim: int,
        *,
        where: str = "redis",
        version: str | None = None,
        version_poll_s: float = 2.0,
    ) -> None:
        self._client = client
        self._dim = dim
        self._wanted = None if version is None else check_version(version)
        self._reading: str | None = None  # the load whose user hashes get_user reads (versioned mode)
        self._poll_s = version_poll_s
        self._watcher: asyncio.Task[None] | None = None
        self._transactions = not isinstance(client, RedisCluster)
        self._where = where  # how errors name the store: a redacted URL, never a password
        self._discovery_task: asyncio.Task[RedisCluster] | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        dim: int,
        *,
        max_connections: int = 64,
        connect_timeout_s: float = 0.5,
        version: str | None = None,
        version_poll_s: float = 2.0,
    ) -> RedisFeatureStore:
        """Pooled client from a URL; AUTH (``[user]:password@``) and TLS (``rediss``) come from it.

        - ``redis://host:port/db``, ``rediss://...``: one node.
        - ``redis+cluster://host:port[,host:port...]``, ``rediss+cluster://...``: Redis Cluster;
          the hosts are seeds (any reachable one finds the rest), the db must be 0 or absent,
          ``max_connections`` is per node.

        Query-string options are passed to the connections (they win over these defaults), as in
        ``redis.asyncio.Redis.from_url``. A malformed URL raises ``RedisURLError`` (a ``ValueError``)
        with the URL redacted. ``version``: versioned mode (module docstring); call ``follow`` to
        pick the version to read.
        """
        options: dict[str, Any] = {
            "max_connections": max_connections,
            "socket_connect_timeout": connect_timeout_s,
            "socket_timeout": connect_timeout_s,
            "retry": Retry(NoBackoff(), 0),
            "decode_responses": False,
        }
        scheme = url.partition("://")[0].lower()
        if scheme not in _SCHEMES:
            raise RedisURLError(
                f"invalid redis url {redacted_url(url)}: the scheme must be one of {', '.join(_SCHEMES)}"
            )
        try:
            client = _cluster_client(url, options) if is_cluster_url(url) else Redis.from_url(url, **options)
        except (ValueError, TypeError, RedisError, RedisClusterException) as exc:
            message = str(exc)
            for secret in _secrets_in(url):
                message = message.replace(secret, "***")
            raise RedisURLError(f"invalid redis url {redacted_url(url)}: {message}") from None
        return cls(client, dim, where=redacted_url(url), version=version, version_poll_s=version_poll_s)

    @property
    def reading_version(self) -> str | None:
        """The load whose user hashes are read (versioned mode; None: none yet, or unversioned)."""
        return self._reading

    async def follow(self, version: str) -> None:
        """Want load ``version`` (the served bundle's): switch now if complete, else keep polling.

        Never raises for an unreachable Redis (the poll retries); ``FeatureStoreError`` for a
        version that cannot name a load.
        """
        self._wanted = check_version(version)
        try:
            await self._refresh()
        except FeatureStoreError as exc:
            log.warning("feature store: cannot check load %s yet: %s", version, exc)
        if self._reading != self._wanted and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.create_task(self._watch())

    async def _refresh(self) -> None:
        """Apply the switch rule once (module docstring)."""
        wanted = self._wanted
        if wanted is None or self._reading == wanted:
            return
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(marker_key(wanted))
        pipe.get(ACTIVE_KEY)
        marker, active = await self._run(pipe.execute, 2.0, "version check")
        if self._complete(marker):
            self._switch(wanted)
        elif self._reading is None and active:
            fallback = active.decode()
            marker = await self._run(lambda: self._client.hgetall(marker_key(fallback)), 2.0, "version check")
            if self._complete(marker):
                self._switch(fallback)

    def _complete(self, marker: dict[bytes, bytes]) -> bool:
        return bool(marker) and marker.get(b"dim") == str(self._dim).encode()

    def _switch(self, version: str) -> None:
        if version != self._reading:
            log.info("feature store: reading user features of load %s (was %s)", version, self._reading)
        self._reading = version

    async def _watch(self) -> None:
        while self._reading != self._wanted:
            await asyncio.sleep(self._poll_s)
            try:
                await self._refresh()
            except FeatureStoreError as exc:
                log.debug("feature store: version check failed: %s", exc)

    async def get_user(self, user_id: str, timeout_s: float) -> UserRecord:
        reading = self._reading
        key = user_key(user_id, reading)
        pipe = self._client.pipeline(transaction=False)
        pipe.lrange(plays_key(user_id), 0, RECENT_PLAYS_MAX - 1)
        pipe.lrange(skips_key(user_id), 0, RECENT_PLAYS_MAX - 1)
        if self._wanted is None or reading is not None:  # versioned with no complete load: cold user
            pipe.hgetall(key)
        plays, skips, *found = await self._run(pipe.execute, timeout_s, "get_user")
        fields = found[0] if found else None
        recent_plays = tuple(p.decode() for p in plays)
        recent_skips = tuple(s.decode() for s in skips)
        if not fields:
            return UserRecord(vector=None, stats=None, recent_plays=recent_plays, recent_skips=recent_skips)
        try:
            vector = unpack_f32(fields[b"vec"], self._dim, f"{key}.vec")
            stats = unpack_f32(fields[b"stats"], len(USER_STATS), f"{key}.stats")
            known = unpack_i32(fields[b"known"], f"{key}.known")
        except KeyError as exc:
            raise FeatureStoreError(f"{key}: missing field {exc}") from exc
        return UserRecord(
            vector=vector, stats=stats, recent_plays=recent_plays, recent_skips=recent_skips, known_items=known
        )

    async def record_events(self, user_id: str, plays: Sequence[str], skips: Sequence[str], timeout_s: float) -> None:
        # One node: MULTI/EXEC. Cluster: a plain pipeline to the user's node (see the class docstring).
        pipe = self._client.pipeline(transaction=self._transactions)
        for key, items in ((plays_key(user_id), plays), (skips_key(user_id), skips)):
            if items:
                pipe.lpush(key, *items)
                pipe.ltrim(key, 0, RECENT_PLAYS_MAX - 1)
        if len(pipe):
            await self._run(pipe.execute, timeout_s, "record_events")

    async def load_snapshot(
        self, snapshot: UserSnapshot, progress: Callable[[int, int], None] | None = None, batch: int = 1000
    ) -> int:
        """Write every user (idempotent). Versioned mode: under the wanted version, then mark that
        load complete (marker + ``active``) and read it."""
        version = self._wanted
        total = len(snapshot.user_ids)
        for start in range(0, total, batch):
            pipe = self._client.pipeline(transaction=False)  # on a cluster: one sub-pipeline per node
            for i in range(start, min(start + batch, total)):
                pipe.hset(
                    user_key(snapshot.user_ids[i], version),
                    mapping={
                        "vec": pack_f32(snapshot.vectors[i]),
                        "stats": pack_f32(snapshot.stats[i]),
                        "known": pack_i32(snapshot.known(i)),
                    },
                )
            await self._run(pipe.execute, 30.0, "load_snapshot")
            if progress is not None:
                progress(min(start + batch, total), total)
        if version is not None:
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(marker_key(version), mapping=marker_fields(total, self._dim))
            pipe.set(ACTIVE_KEY, version)
            await self._run(pipe.execute, 30.0, "load_snapshot")
            self._switch(version)
        return total

    async def ping(self, timeout_s: float) -> bool:
        """One node: PING. Cluster: PING redis-py's default node only (a dead node elsewhere goes unseen)."""
        try:
            return bool(await self._run(self._client.ping, timeout_s, "ping"))
        except FeatureStoreError:
            return False

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
        if self._discovery_task is not None and not self._discovery_task.done():
            self._discovery_task.cancel()
            with contextlib.suppress(BaseException):
                await self._discovery_task
        await self._client.aclose()

    async def _run(self, call: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
        try:
            return await asyncio.wait_for(self._discovered_then(call), timeout_s)
        except TimeoutError as exc:
            raise FeatureStoreTimeout(f"{self._where} {what}: no answer within {timeout_s * 1000:.0f} ms") from exc
        except (RedisError, RedisClusterException, OSError) as exc:
            raise FeatureStoreError(f"{self._where} {what}: {exc}") from exc

    async def _discovered_then(self, call: Callable[[], Awaitable[Any]]) -> Any:
        if isinstance(self._client, RedisCluster) and self._client._initialize:
            await asyncio.shield(self._discovery(self._client))
        return await call()

    def _discovery(self, client: RedisCluster) -> asyncio.Task[RedisCluster]:
        """The cluster discovery in flight, shared by every caller and never cancelled by their timeouts.

        redis-py discovers the cluster lazily (CLUSTER SLOTS, then COMMAND: ~15 ms on a laptop) and
        again after a connection error on a single command or repeated MOVED redirects. Run inside
        a request's timeout it would be cancelled, and restarted, on every request.
        """
        task = self._discovery_task
        if task is None or task.done():
            task = self._discovery_task = asyncio.create_task(client.initialize())
            task.add_done_callback(_retrieve_exception)
        return task


def marker_fields(rows: int, dim: int) -> dict[Any, Any]:
    """The complete-marker hash of a load: its row count, vector dim and completion time (ms)."""
    return {"rows": str(rows), "dim": str(dim), "completed_ms": str(int(time.time() * 1000))}


def _retrieve_exception(task: asyncio.Task[Any]) -> None:
    """Mark a discovery failure as seen (its waiters got it, or timed out and went on)."""
    if not task.cancelled():
        task.exception()


def _cluster_client(url: str, options: dict[str, Any]) -> RedisCluster:
    """``RedisCluster`` from ``redis[s]+cluster://[user:password@]host:port[,host:port...][/0][?options]``."""
    scheme, _, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    cut = min((i for i in (after.find(c) for c in "/?#") if i >= 0), default=len(after))
    seeds = [s for s in after[:cut].split(",") if s.strip()]
    if not seeds:
        raise ValueError("no cluster seed nodes (expected host:port[,host:port...])")
    nodes = []
    for seed in seeds:
        parsed = urlsplit(f"//{seed.strip()}")
        if not parsed.hostname:
            raise ValueError(f"bad cluster seed node {seed!r}")
        nodes.append(ClusterNode(parsed.hostname, parsed.port or 6379))
    # Credentials, TLS and query options parsed exactly as redis-py parses a single-node URL.
    parsed_options: dict[str, Any] = dict(
        parse_url(f"{CLUSTER_SCHEMES[scheme.lower()]}://{userinfo}{at}{seeds[0].strip()}{after[cut:]}")
    )
    parsed_options.pop("host", None)
    parsed_options.pop("port", None)
    if parsed_options.pop("connection_class", None) is SSLConnection:
        parsed_options["ssl"] = True
    return RedisCluster(startup_nodes=nodes, **{**options, **parsed_options})
