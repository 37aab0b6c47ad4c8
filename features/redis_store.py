"""Redis feature store: async client over a connection pool, one pipelined round trip per call.

Retries are off: on the request path a failed or slow call falls back at once (the pipeline
degrades to cold-start features); the per-call timeout bounds every operation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from features.keys import pack_f32, plays_key, skips_key, unpack_f32, user_key
from features.schema import RECENT_PLAYS_MAX, USER_STATS
from features.store import FeatureStoreError, FeatureStoreTimeout, UserRecord
from models.bundle import UserSnapshot


class RedisFeatureStore:
    """``FeatureStore`` on Redis (key layout in ``features.keys``). Built once, shared by requests."""

    def __init__(self, client: Redis, dim: int) -> None:
        self._client = client
        self._dim = dim

    @classmethod
    def from_url(
        cls, url: str, dim: int, *, max_connections: int = 64, connect_timeout_s: float = 0.5
    ) -> RedisFeatureStore:
        """Pooled client from a ``redis://`` or ``rediss://`` URL (AUTH and TLS come from the URL)."""
        client = Redis.from_url(
            url,
            max_connections=max_connections,
            socket_connect_timeout=connect_timeout_s,
            socket_timeout=connect_timeout_s,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        return cls(client, dim)

    async def get_user(self, user_id: str, timeout_s: float) -> UserRecord:
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(user_key(user_id))
        pipe.lrange(plays_key(user_id), 0, RECENT_PLAYS_MAX - 1)
        pipe.lrange(skips_key(user_id), 0, RECENT_PLAYS_MAX - 1)
        fields, plays, skips = await self._run(pipe.execute(), timeout_s, "get_user")
        vector = stats = None
        if fields:
            try:
                vector = unpack_f32(fields[b"vec"], self._dim, f"{user_key(user_id)}.vec")
                stats = unpack_f32(fields[b"stats"], len(USER_STATS), f"{user_key(user_id)}.stats")
            except KeyError as exc:
                raise FeatureStoreError(f"{user_key(user_id)}: missing field {exc}") from exc
        return UserRecord(
            vector=vector,
            stats=stats,
            recent_plays=tuple(p.decode() for p in plays),
            recent_skips=tuple(s.decode() for s in skips),
        )

    async def record_events(self, user_id: str, plays: Sequence[str], skips: Sequence[str], timeout_s: float) -> None:
        pipe = self._client.pipeline(transaction=True)
        for key, items in ((plays_key(user_id), plays), (skips_key(user_id), skips)):
            if items:
                pipe.lpush(key, *items)
                pipe.ltrim(key, 0, RECENT_PLAYS_MAX - 1)
        if len(pipe):
            await self._run(pipe.execute(), timeout_s, "record_events")

    async def load_snapshot(
        self, snapshot: UserSnapshot, progress: Callable[[int, int], None] | None = None, batch: int = 1000
    ) -> int:
        total = len(snapshot.user_ids)
        for start in range(0, total, batch):
            pipe = self._client.pipeline(transaction=False)
            for i in range(start, min(start + batch, total)):
                pipe.hset(
                    user_key(snapshot.user_ids[i]),
                    mapping={"vec": pack_f32(snapshot.vectors[i]), "stats": pack_f32(snapshot.stats[i])},
                )
            await self._run(pipe.execute(), 30.0, "load_snapshot")
            if progress is not None:
                progress(min(start + batch, total), total)
        return total

    async def ping(self, timeout_s: float) -> bool:
        try:
            return bool(await self._run(self._client.ping(), timeout_s, "ping"))
        except FeatureStoreError:
            return False

    async def close(self) -> None:
        await self._client.aclose()

    @staticmethod
    async def _run(call: Awaitable[Any], timeout_s: float, what: str) -> Any:
        try:
            return await asyncio.wait_for(call, timeout_s)
        except TimeoutError as exc:
            raise FeatureStoreTimeout(f"redis {what}: no answer within {timeout_s * 1000:.0f} ms") from exc
        except (RedisError, OSError) as exc:
            raise FeatureStoreError(f"redis {what}: {exc}") from exc
