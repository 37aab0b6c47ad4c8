"""``encore experiments report`` writes one self-contained HTML page that headless Chromium renders.

The page is rendered by Debian's Chromium (``make system-packages`` installs it): the DOM after
rendering must hold the verdict, the decision table and the four plots as inline SVG, and the
screenshot must be a real picture (many distinct colours), kept in ``tmp_path`` for a person to see.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DAY_MS = 86_400_000
T0 = 1_764_547_200_000  # 2025-12-01T00:00:00Z
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def write_logs(directory: Path, seed: int = 11) -> tuple[Path, Path]:
    """Seven days of a two-arm experiment where treatment streams 25 % more; a pre-period for CUPED."""
    rng = np.random.default_rng(seed)
    exposures, outcomes = [], []
    for i in range(2_500):
        unit, treated = f"user-{i}", bool(rng.random() < 0.5)
        ts = T0 + int(rng.integers(0, 7 * DAY_MS))
        exposures.append(
            {"ts_ms": ts, "unit_id": unit, "experiment": "home-ranker-v2", "variant": ["control", "treatment"][treated]}
        )
        activity = rng.gamma(2.0, 1.5)
        for _ in range(rng.poisson(activity * 3)):
            outcomes.append(
                {"ts_ms": ts - int(rng.integers(1, 10 * DAY_MS)), "unit_id": unit, "metric": "stream", "value": 1.0}
            )
        for metric, rate in (("stream", 3 * (1.25 if treated else 1.0)), ("skip", 1.0), ("like", 0.2)):
            for _ in range(rng.poisson(activity * rate)):
                outcomes.append(
                    {"ts_ms": ts + int(rng.integers(0, DAY_MS)), "unit_id": unit, "metric": metric, "value": 1.0}
                )
    exposure_path, outcome_path = directory / "exposures.jsonl", directory / "outcomes.jsonl"
    exposure_path.write_text("".join(json.dumps(r) + "\n" for r in exposures))
    outcome_path.write_text("".join(json.dumps(r) + "\n" for r in outcomes))
    return exposure_path, outcome_path


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path is not None, "Debian's chromium is needed: make system-packages installs it"
    return path


def render(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )


@pytest.mark.integration
def test_the_report_renders_in_headless_chromium_with_verdict_table_and_plots(tmp_path: Path) -> None:
    exposures, outcomes = write_logs(tmp_path)
    page = tmp_path / "report.html"
    cli = subprocess.run(
        [sys.executable, "-m", "cli", "experiments", "report", "--exposures", str(exposures),
         "--outcomes", str(outcomes), "--out", str(page), "--title", "Home ranker v2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "home-ranker-v2: ship (treatment)" in cli.stdout
    html = page.read_text()
    assert not re.search(r"<script|<link|<img|\ssrc=|url\((?!#)", html)  # self-contained: nothing to fetch

    dom = render(page, tmp_path, "--dump-dom", "--virtual-time-budget=5000").stdout
    assert "<title>Home ranker v2</title>" in dom
    assert re.search(r'class="verdict" data-verdict="ship"[^>]*>ship \(treatment\)', dom)
    assert "streams improved" in dom and "guardrail skip_rate within its 5% margin" in dom
    plots = re.findall(r'<figure class="plot" data-plot="([a-z-]+)"><svg', dom)
    assert plots == ["lift-over-time", "distributions", "sample-ratio", "guardrails"]
    table = dom.split('<table class="decision">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + 3  # header + streams, skip_rate, likes
    cuped = re.search(r"<td>streams</td>(?:<td>[^<]*</td>){6}<td>([0-9.]+)%</td>", table)
    assert cuped is not None and float(cuped.group(1)) > 20.0  # the pre-period covariate removed variance

    shot = tmp_path / "report.png"
    render(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,3000", "--hide-scrollbars")
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 500  # text, the green verdict, plot lines and fills
