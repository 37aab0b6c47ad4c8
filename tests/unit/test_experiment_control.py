"""ExperimentControl over a file store: a change is committed whole or not at all, stopping always
passes, results read the configured logs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from experimentation.control import Audit, ExperimentControl, GateProblems, Sources
from experimentation.planner import Intent, TrafficEstimate
from serving.experiments.store import FileExperimentStore

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
INTENT = Intent("cap", "home", {"control": {}, "cap3": {"diversity_cap": 3}}, "stream", 0.1, ("skip",), 14.0)


def control(tmp_path: Path, sources: Sources | None = None) -> ExperimentControl:
    sources = sources or Sources(traffic_default=TrafficEstimate(10_000.0, "stated"))
    return ExperimentControl(FileExperimentStore(tmp_path / "store"), lambda: ["m1"], sources, clock=lambda: NOW)


async def test_an_intent_becomes_a_gated_draft_then_runs_and_stops(tmp_path: Path) -> None:
    c = control(tmp_path)
    revision, generated = await c.create_from_intent(INTENT, Audit("alice", "try cap 3"))
    assert revision.number == 1 and generated.refused == []
    await c.start("cap", Audit("alice", "go"))
    stopped = await c.stop("cap", Audit("alice", "done"))
    view = await c.get("cap")
    assert stopped.number == 3 and view.experiment["status"] == "stopped" and view.layer == "home-experiments"
    assert [r.reason for r in await c.revisions(10)] == ["done", "go", "try cap 3"]


async def test_a_change_the_gate_refuses_commits_nothing(tmp_path: Path) -> None:
    c = control(tmp_path)
    unpowered = {"key": "x", "surface": "home", "coverage": 1.0, "variants": [{"key": "a", "weight": 1.0}]}
    with pytest.raises(GateProblems) as caught:
        await c.create_definition(unpowered, "", Audit("bob", "x"))
    assert any("variants" in p for p in caught.value.problems)
    assert any(p.startswith("x: metrics: required") for p in caught.value.problems)
    assert await c.store.head() == 0


async def test_results_analyse_the_configured_logs(tmp_path: Path) -> None:
    exposures, outcomes = tmp_path / "exposures.jsonl", tmp_path / "outcomes.jsonl"
    exposures.write_text(
        "".join(
            json.dumps({"ts_ms": 1, "unit_id": f"u{i}", "experiment": "cap", "variant": ("control", "cap3")[i % 2]})
            + "\n"
            for i in range(200)
        )
    )
    outcomes.write_text(
        "".join(
            json.dumps({"ts_ms": 2, "unit_id": f"u{i}", "metric": "stream", "value": 1.0 + i % 2}) + "\n"
            for i in range(200)
        )
    )
    c = control(tmp_path, Sources((exposures,), (outcomes,), TrafficEstimate(10_000.0, "stated")))
    await c.create_from_intent(INTENT, Audit("alice", "try cap 3"))
    text, report = await c.results("cap")
    assert "cap" in text and "stream" in text
    assert json.loads(report)["experiments"][0]["experiment"] == "cap"
