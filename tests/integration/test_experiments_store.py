"""The experiments store (file and real Redis): immutable revisions, an audit trail, compare-and-set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loadtests.harness import RedisProcess
from serving.experiments.store import (
    ExperimentStore,
    RevisionConflict,
    StoreUnavailable,
    history,
    open_store,
)

DOC_A = {"experiments": [{"key": "a", "surface": "home", "variants": []}]}
DOC_B = {"experiments": []}


@pytest.fixture(params=["file", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ExperimentStore]:
    if request.param == "file":
        opened = open_store(f"file://{tmp_path / 'store'}")
    else:
        redis = RedisProcess()
        redis.start()
        request.addfinalizer(redis.stop)
        opened = open_store(redis.url)
    try:
        yield opened
    finally:
        await opened.close()


async def test_commits_are_numbered_revisions_with_who_when_and_why(store: ExperimentStore) -> None:
    assert await store.head() == 0 and await history(store) == []
    first = await store.commit(0, DOC_A, "alice", "start a")
    second = await store.commit(1, DOC_B, "bob", "stop everything")
    assert (first.number, second.number, await store.head()) == (1, 2, 2)
    got = await store.get(1)
    assert (got.document, got.author, got.reason) == (DOC_A, "alice", "start a")
    assert [(r.number, r.author) for r in await history(store)] == [(2, "bob"), (1, "alice")]
    assert second.committed_at >= first.committed_at


async def test_a_commit_on_a_stale_head_is_refused_and_changes_nothing(store: ExperimentStore) -> None:
    await store.commit(0, DOC_A, "alice", "start a")
    with pytest.raises(RevisionConflict, match="based on revision 0, but the head is now 1"):
        await store.commit(0, DOC_B, "bob", "late")
    assert await store.head() == 1 and (await store.get(1)).author == "alice"


async def test_of_concurrent_commits_on_one_head_exactly_one_wins(store: ExperimentStore) -> None:
    results = await asyncio.gather(
        *(store.commit(0, {"experiments": [], "n": i}, f"client-{i}", "race") for i in range(8)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1 and all(isinstance(r, RevisionConflict) for r in results if r not in winners)
    assert await store.head() == 1
    assert (await store.get(1)).author == winners[0].author


async def test_every_change_needs_an_author_and_a_reason(store: ExperimentStore) -> None:
    with pytest.raises(ValueError, match="author"):
        await store.commit(0, DOC_A, " ", "x")
    with pytest.raises(ValueError, match="reason"):
        await store.commit(0, DOC_A, "alice", "")
    assert await store.head() == 0


async def test_an_unreachable_redis_is_store_unavailable_naming_it() -> None:
    store = open_store("redis://127.0.0.1:1/0", timeout_s=0.5)
    try:
        with pytest.raises(StoreUnavailable, match=r"127\.0\.0\.1:1"):
            await store.head()
    finally:
        await store.close()


def test_store_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="unsupported scheme 'http'"):
        open_store("http://example/x")


def test_yaml_timestamps_are_stored_as_iso_strings_meaning_the_same() -> None:
    import datetime as dt

    import yaml

    from serving.experiments.config import parse_experiments
    from serving.experiments.store import json_document

    loaded = yaml.safe_load(
        "experiments:\n  - {key: c, surface: home, coverage: 1.0, status: running, start: 2026-01-01,\n"
        "     stop: 2026-02-01T12:00:00+01:00, variants: [{key: a, weight: 0.5}, {key: b, weight: 0.5}]}\n"
    )
    stored = json_document(loaded)
    assert stored["experiments"][0]["start"] == "2026-01-01T00:00:00+00:00"
    original, restored = parse_experiments(loaded, "yaml"), parse_experiments(stored, "store")
    midnight = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert original.all_experiments[0].start == restored.all_experiments[0].start == midnight
    assert original.all_experiments[0].stop == restored.all_experiments[0].stop
    with pytest.raises(ValueError, match="mapping"):
        json_document([1, 2])
