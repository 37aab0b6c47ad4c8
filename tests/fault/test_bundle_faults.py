"""Corrupt, truncated or missing bundle files: refused at start-up naming the file; refused on reload
under load while the old bundle keeps serving every request."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loadtests.harness import ServerProcess, start_server
from tests.fault.conftest import Reporter, finish, metric
from tests.fault.load import Load, wait_until
from tests.fault.report import FaultReport, summarise

Serve = Callable[..., ServerProcess]


def truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def edit_manifest(bundle: Path, change: Callable[[dict[str, object]], None]) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def rehash(bundle: Path, rel: str) -> None:
    """Edit the manifest so its checksum matches the (damaged) file: only deeper checks can catch it."""
    digest = hashlib.sha256((bundle / rel).read_bytes()).hexdigest()

    def change(manifest: dict[str, object]) -> None:
        checksums = manifest["checksums"]
        assert isinstance(checksums, dict)
        checksums[rel] = digest

    edit_manifest(bundle, change)


def _garbage_model_rehashed(b: Path) -> None:
    (b / "models" / "linear-v2.onnx").write_bytes(b"not an onnx model" * 8)
    rehash(b, "models/linear-v2.onnx")


def _truncated_index_rehashed(b: Path) -> None:
    truncate(b / "index.faiss", 500)
    rehash(b, "index.faiss")


def _zero_popularity_checksum(b: Path) -> None:
    def change(manifest: dict[str, object]) -> None:
        checksums = manifest["checksums"]
        assert isinstance(checksums, dict)
        checksums["popularity.npy"] = "0" * 64

    edit_manifest(b, change)


def refusals_reach(server: ServerProcess, n: int) -> Callable[[], bool]:
    return lambda: server.log().count("bundle reload refused") >= n


# (description, damage, text the refusal must contain: the file it names)
CORRUPTIONS: list[tuple[str, Callable[[Path], object], str]] = [
    ("truncated item_vectors.npy", lambda b: truncate(b / "item_vectors.npy", 1000), "item_vectors.npy: checksum"),
    (
        "garbage models/linear-v1.onnx",
        lambda b: (b / "models" / "linear-v1.onnx").write_bytes(os.urandom(166)),
        "models/linear-v1.onnx: checksum",
    ),
    ("garbage onnx, manifest rehashed", _garbage_model_rehashed, "models/linear-v2.onnx"),
    ("missing index.faiss", lambda b: (b / "index.faiss").unlink(), "index.faiss: listed in the manifest but missing"),
    ("truncated index.faiss, manifest rehashed", _truncated_index_rehashed, "index.faiss"),
    ("manifest.json truncated", lambda b: truncate(b / "manifest.json", 300), "manifest.json: not valid JSON"),
    (
        "manifest embedding_dim edited",
        lambda b: edit_manifest(b, lambda m: m.__setitem__("embedding_dim", 16)),
        "item_vectors.npy is float32(400, 8), expected float32(400, 16)",
    ),
    (
        "manifest checksum edited",
        _zero_popularity_checksum,
        "popularity.npy: checksum mismatch",
    ),
]


def refusal(bundle: Path, tmp: Path) -> tuple[str, float]:
    """Start a server on ``bundle``; it must refuse: returns its log and how long the refusal took."""
    started = time.monotonic()
    with pytest.raises(RuntimeError) as refused:
        start_server(bundle, tmp)
    return str(refused.value), time.monotonic() - started


def test_damaged_bundles_are_refused_at_start_up_naming_the_file(
    tiny_bundle_path: Path, tmp_path: Path, reporter: Reporter
) -> None:
    copies = []
    for name, damage, _ in CORRUPTIONS:
        broken = tmp_path / name.replace(" ", "_").replace("/", "_").replace(",", "")
        shutil.copytree(tiny_bundle_path, broken)
        damage(broken)
        copies.append(broken)
    with ThreadPoolExecutor(max_workers=4) as pool:  # independent processes: refuse them side by side
        outcomes = list(pool.map(lambda b: refusal(b, tmp_path), copies))
    for (name, _, expected), broken, (log, seconds) in zip(CORRUPTIONS, copies, outcomes, strict=True):
        assert "server exited with 2" in log, log  # a clean refusal, not a crash
        assert expected in log, log
        assert "Traceback" not in log, log
        message = next(line for line in log.splitlines() if line.startswith("encore serve:"))
        message = message.removeprefix("encore serve:").replace(str(broken), "").strip(": /")
        reporter.add(
            FaultReport(f"start-up: {name}", sent=0, ok=0, note=f"exit 2 after {seconds:.1f} s: {message[:60]}")
        )


def test_a_corrupt_bundle_swapped_in_under_load_is_refused_and_the_old_one_keeps_serving(
    tiny_bundle_path: Path, tmp_path: Path, serve: Serve, reporter: Reporter
) -> None:
    current = tmp_path / "current"
    current.symlink_to(tiny_bundle_path)
    settings = tmp_path / "settings.yaml"
    settings.write_text("bundle_reload_s: 0.2\n")
    server = serve(current, "--config", str(settings))
    broken = []
    damages: list[tuple[str, Callable[[Path], object]]] = [
        ("truncated-vectors", lambda b: truncate(b / "item_vectors.npy", 1000)),
        ("garbage-onnx", _garbage_model_rehashed),
        ("no-index", lambda b: (b / "index.faiss").unlink()),
    ]
    for name, damage in damages:
        copy = tmp_path / "bundles" / name
        shutil.copytree(tiny_bundle_path, copy)
        damage(copy)
        broken.append(copy)
    with Load(server.target, tag="reload") as load:
        load.wait_for_samples(60)
        fault_start = time.monotonic()
        for n, copy in enumerate(broken, start=1):
            link = tmp_path / "current.new"
            link.symlink_to(copy)
            os.replace(link, current)  # an atomic switch, as a deploy does it
            assert wait_until(refusals_reach(server, n), 10), server.log()
            load.wait_for_samples(30)
        fault_end = time.monotonic()
        load.wait_for_samples(60)
    samples = load.samples()
    report = reporter.add(
        summarise("reload: 3 corrupt bundles under load", samples, fault_end, note="old bundle kept serving")
    )
    assert report.error_count == 0, report
    assert fault_start < fault_end
    assert metric(server, "encore_bundle_reloads_total", outcome="rejected") == 3
    assert metric(server, "encore_bundle_reloads_total", outcome="applied") == 0
    log = server.log()
    for needle in ("item_vectors.npy: checksum mismatch", "linear-v2.onnx", "index.faiss: listed in the manifest"):
        assert needle in log, log
    finish(server)
