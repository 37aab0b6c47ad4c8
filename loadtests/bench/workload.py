"""What a benchmark run needs on disk: the bundles (built when missing), the workload file of users
and Now Playing seeds, and the server's settings file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def _build_command(name: str, bundles_dir: Path, data_path: Path) -> list[str] | None:
    base = [sys.executable, "-m", "cli", "build", "--version", name, "--out", str(bundles_dir)]
    if name == "synthetic-1m":
        return [*base, "--n-items", "1000000", "--n-users", "20000"]
    if name == "synthetic-20k":  # what --quick uses: a smoke run needs no million-item index
        return [*base, "--n-items", "20000", "--n-users", "2000"]
    if name == "hetrec-bench":
        return [*base, "--dataset", "hetrec", "--data-path", str(data_path)]
    return None


def ensure_bundle(name: str, bundles_dir: Path, data_path: Path, progress: Callable[[str], None]) -> Path | None:
    """The bundle's path, building it first when it is missing; ``None`` (with a message) to skip it.

    Progress and skip messages go to ``progress``; the build's own output is echoed on stdout.
    """
    path = bundles_dir / name
    if (path / "manifest.json").is_file():
        return path
    cmd = _build_command(name, bundles_dir, data_path)
    if cmd is None:
        progress(f"skipping {name}: no bundle at {path} and no recipe to build it")
        return None
    if name == "hetrec-bench" and not (data_path / "user_artists.dat").is_file():
        progress(f"skipping {name}: the HetRec data is not at {data_path} (pass --data-path)")
        return None
    progress(f"building {name} (first run only): {' '.join(cmd[1:])}")
    if name == "synthetic-1m":
        progress("  the 1,000,000-item bundle takes a few minutes and ~550 MB on disk")
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        print(f"  build {name}: {line.rstrip()}", flush=True)
    if process.wait() != 0 or not (path / "manifest.json").is_file():
        raise SystemExit(f"bench: building {name} failed (exit {process.returncode})")
    return path


def write_workload(bundle: Path, out: Path, n_seeds: int = 2000) -> dict[str, int]:
    """Users (all snapshot users) and Now Playing seeds (the most popular items) for the load generator."""
    import numpy as np

    users = (bundle / "user_features" / "user_ids.txt").read_text(encoding="utf-8").splitlines()
    popular = np.load(bundle / "popularity.npy")[:n_seeds]
    wanted = {int(i): rank for rank, i in enumerate(popular)}
    seeds: list[str] = [""] * len(wanted)
    with (bundle / "items.tsv").open(encoding="utf-8") as fh:
        next(fh)
        for row, line in enumerate(fh):
            rank = wanted.get(row)
            if rank is not None:
                seeds[rank] = line.split("\t", 1)[0]
    out.write_text(json.dumps({"users": users, "seeds": [s for s in seeds if s]}), encoding="utf-8")
    return {"users": len(users), "seeds": len(seeds)}


def settings_yaml(
    retrieval_size: int, popularity_size: int, shadow_model: str | None = None, cascade_size: int | None = None
) -> str:
    lines = ["# written by loadtests.bench", "surfaces:"]
    extra = f", shadow_model: {shadow_model}" if shadow_model else ""
    extra += f", cascade_size: {cascade_size}" if cascade_size is not None else ""
    for surface in ("home", "now_playing"):
        lines.append(f"  {surface}: {{retrieval_size: {retrieval_size}, popularity_size: {popularity_size}{extra}}}")
    return "\n".join(lines) + "\n"
