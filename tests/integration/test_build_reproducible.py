"""Two builds of the same data give the same evaluation, to 4 decimals (seeds everywhere)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from models.build import BuildConfig, build_bundle
from models.bundle import load_bundle

pytestmark = pytest.mark.integration


def _numbers(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of the evaluation dict by its path; floats rounded to 4 decimals."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_numbers(item, f"{path}/{key}"))
        return out
    return {path: round(value, 4) if isinstance(value, float) else value}


def test_two_small_builds_give_the_same_evaluation_figures(tmp_path: Path) -> None:
    # The configuration (it used to fail with "ONNX output differs from LightGBM predict").
    config = BuildConfig(
        dataset="synthetic",
        n_items=1500,
        n_users=150,
        ranker_users=80,
        eval_users=20,
        factors=16,
        out_dir=tmp_path,
        version="first",
        seed=3,
    )
    lines: list[str] = []
    first = build_bundle(config, log=lines.append)
    second = build_bundle(replace(config, version="second"), log=lambda _line: None)
    a = load_bundle(first).manifest["evaluation"]
    b = load_bundle(second).manifest["evaluation"]
    assert a["home"] and a["now_playing"]
    assert _numbers(a) == _numbers(b)
    assert any("evaluating the served pipeline" in line for line in lines)
    assert any(line.strip().startswith("home") and "ranker" in line for line in lines)  # the table
