"""The experiments store: one source of truth for a fleet, as a chain of immutable revisions.

A revision is the whole experiments document (what an experiments YAML file holds, as JSON) plus
who committed it, when and why; revision numbers run 1, 2, 3, … and a committed revision never
changes. ``commit`` is compare-and-set on the head: it names the head it was based on and fails
with ``RevisionConflict`` when another commit got there first, so two concurrent changes never
interleave (one wins, the other is told to re-read and retry). Every serving process follows the
head (``serving.experiments.follow``).

Two stores behind one protocol, chosen by URL (``open_store``):

- ``file:///dir`` (the embedded default): one JSON file per revision, ``000001.json`` …; a commit
  writes a temporary file and hard-links it to the next number, which fails if that name exists
  (atomic create-if-absent on one filesystem).
- ``redis://…`` / ``rediss://…`` (production; may be the feature store's deployment): keys
  ``{encore:experiments}:head`` and ``{encore:experiments}:rev:<n>`` (one hash slot, so a Redis
  Cluster serves them from one node); a commit is one Lua script: check the head, write the
  revision, advance the head.

Errors: ``RevisionConflict`` (the head moved), ``StoreUnavailable`` (the store cannot be read or
written; nothing was committed, or the commit's outcome is unknown when it says so).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from features.redis_store import _cluster_client, is_cluster_url, redacted_url
from serving.experiments.config import ExperimentError


class RevisionConflict(ExperimentError):
    """The head is no longer the revision a commit was based on."""

    def __init__(self, expected: int, head: int) -> None:
        super().__init__(
            f"revision conflict: the change was based on revision {expected}, but the head is now {head}; "
            "re-read it and apply the change again"
        )
        self.expected = expected
        self.head = head


class StoreUnavailable(ExperimentError):
    """The experiments store could not be read or written."""


@dataclass(frozen=True)
class Revision:
    """One committed experiments document and its audit fields."""

    number: int
    document: Mapping[str, Any]
    author: str
    reason: str
    committed_at: float  # Unix seconds

    def to_json(self) -> str:
        return json.dumps(
            {
                "number": self.number,
                "document": self.document,
                "author": self.author,
                "reason": self.reason,
                "committed_at": self.committed_at,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes, source: str) -> Revision:
        try:
            data = json.loads(text)
            return cls(
                number=int(data["number"]),
                document=dict(data["document"] or {}),
                author=str(data["author"]),
                reason=str(data["reason"]),
                committed_at=float(data["committed_at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable(f"{source}: not a valid revision record: {exc}") from exc


class ExperimentStore(Protocol):
    """Where the revisions live (see the module docstring)."""

    url: str

    async def head(self) -> int:
        """The newest revision's number; 0 when nothing was committed yet."""

    async def get(self, number: int) -> Revision:
        """Revision ``number`` (``StoreUnavailable`` when missing or unreadable)."""

    async def commit(self, expected_head: int, document: Mapping[str, Any], author: str, reason: str) -> Revision:
        """Commit ``document`` as revision ``expected_head + 1``, or ``RevisionConflict``."""

    async def close(self) -> None: ...


def json_document(document: object) -> dict[str, Any]:
    """An experiments document (as YAML loads it) as the store keeps it: JSON, with YAML timestamps
    as ISO-8601 strings that mean the same to the validator (a date is midnight UTC)."""

    def timestamp(value: object) -> str:
        if isinstance(value, dt.datetime):
            return value.isoformat()
        if isinstance(value, dt.date):
            return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).isoformat()
        raise TypeError(f"not JSON-serialisable: {value!r}")

    data = json.loads(json.dumps(document if document is not None else {}, default=timestamp))
    if not isinstance(data, dict):
        raise ValueError("an experiments document is a mapping")
    return data


def _check_audit(author: str, reason: str) -> None:
    if not author.strip():
        raise ValueError("author: required (who makes the change)")
    if not reason.strip():
        raise ValueError("reason: required (why the change is made)")


async def history(store: ExperimentStore, limit: int = 50) -> list[Revision]:
    """The newest ``limit`` revisions, newest first (the audit trail)."""
    head = await store.head()
    return [await store.get(n) for n in range(head, max(0, head - limit), -1)]


class FileExperimentStore:
    """Revisions as files in ``directory`` (created when missing); one process or many on one host."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.url = f"file://{directory}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"{self.url}: cannot create the directory: {exc}") from exc

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:06d}.json"

    async def head(self) -> int:
        try:
            names = os.listdir(self.directory)
        except OSError as exc:
            raise StoreUnavailable(f"{self.url}: cannot list revisions: {exc}") from exc
        numbers = [int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit()]
        return max(numbers, default=0)

    async def get(self, number: int) -> Revision:
        path = self._path(number)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise StoreUnavailable(f"{path}: cannot read revision {number}: {exc}") from exc
        return Revision.from_json(text, str(path))

    async def commit(self, expected_head: int, document: Mapping[str, Any], author: str, reason: str) -> Revision:
        _check_audit(author, reason)
        head = await self.head()
        if head != expected_head:
            raise RevisionConflict(expected_head, head)
        revision = Revision(expected_head + 1, dict(document), author, reason, time.time())
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".pending-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(revision.to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.link(tmp, self._path(revision.number))  # fails if another commit took the number
        except FileExistsError:
            raise RevisionConflict(expected_head, await self.head()) from None
        except OSError as exc:
            raise StoreUnavailable(f"{self.url}: cannot write revision {revision.number}: {exc}") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)
        return revision

    async def close(self) -> None:
        return None


#: Check the head, write the revision, advance the head: -1 - head when the head moved.
_COMMIT_SCRIPT = """
local head = tonumber(redis.call('GET', KEYS[1]) or '0')
if head ~= tonumber(ARGV[1]) then return -1 - head end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], head + 1)
return head + 1
"""
_PREFIX = "{encore:experiments}"


class RedisExperimentStore:
    """Revisions in Redis (a single node or a Redis Cluster); ``timeout_s`` bounds every call."""

    def __init__(self, url: str, timeout_s: float = 1.0) -> None:
        self.url = redacted_url(url)
        self._timeout_s = timeout_s
        if is_cluster_url(url):
            self._client: Any = _cluster_client(url, {"socket_timeout": timeout_s})
        else:
            self._client = aioredis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=False
            )
        self._commit = self._client.register_script(_COMMIT_SCRIPT)

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await coro
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailable(f"{self.url}: {what}: {exc!r}") from exc

    async def head(self) -> int:
        value = await self._call("reading the head", self._client.get(f"{_PREFIX}:head"))
        return int(value) if value is not None else 0

    async def get(self, number: int) -> Revision:
        text = await self._call(f"reading revision {number}", self._client.get(f"{_PREFIX}:rev:{number}"))
        if text is None:
            raise StoreUnavailable(f"{self.url}: revision {number} is missing")
        return Revision.from_json(text, f"{self.url} revision {number}")

    async def commit(self, expected_head: int, document: Mapping[str, Any], author: str, reason: str) -> Revision:
        _check_audit(author, reason)
        revision = Revision(expected_head + 1, dict(document), author, reason, time.time())
        keys = [f"{_PREFIX}:head", f"{_PREFIX}:rev:{revision.number}"]
        try:
            result = int(
                await self._call("committing", self._commit(keys=keys, args=[expected_head, revision.to_json()]))
            )
        except StoreUnavailable as exc:
            raise StoreUnavailable(f"{exc}; whether revision {revision.number} was committed is unknown") from exc
        if result < 0:
            raise RevisionConflict(expected_head, -1 - result)
        return revision

    async def close(self) -> None:
        await self._client.aclose()


def open_store(url: str, timeout_s: float = 1.0) -> ExperimentStore:
    """The store at ``url``: ``file:///dir`` (or a plain path), ``redis[s]://…``, ``redis[s]+cluster://…``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("", "file"):
        path = urlsplit(url).path if scheme == "file" else url
        if not path:
            raise ValueError(f"experiments_store: {url!r} names no directory")
        return FileExperimentStore(Path(path))
    if scheme.startswith("redis"):
        return RedisExperimentStore(url, timeout_s)
    raise ValueError(
        f"experiments_store: unsupported scheme {scheme!r} (file://, redis://, rediss://, redis+cluster://)"
    )
