"""``encore rank --json``, ``encore captures show`` and ``encore bundles list`` against real files and a real server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from loadtests.harness import start_server, stop_server


def encore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *args], capture_output=True, text=True, timeout=120)


def test_rank_json_and_captures_show_read_the_same_exchange(tiny_bundle_path: Path, tmp_path: Path) -> None:
    captures = tmp_path / "captures"
    server = start_server(tiny_bundle_path, tmp_path, "--capture-fraction", "1", "--capture-dir", str(captures))
    try:
        ranked = encore("rank", "--user-id", "someone", "--limit", "5", "--target", server.target, "--json")
        assert ranked.returncode == 0, ranked.stderr
        response = json.loads(ranked.stdout)  # nothing but JSON on stdout
        items = [i["item_id"] for i in response["items"]]
        assert len(items) == 5 and response["bundle_version"] == tiny_bundle_path.name
    finally:
        stop_server(server)

    text = encore("captures", "show", str(captures), "--items", "5")
    assert text.returncode == 0, text.stderr
    assert f"request {response['request_id']}" in text.stdout
    assert "user someone  home  limit 5" in text.stdout
    assert re.findall(r"^\s+\d+\. (\S+)", text.stdout, flags=re.MULTILINE) == items
    assert text.stdout.rstrip().endswith("1 exchange")
    as_json = encore("captures", "show", str(captures), "--json")
    (record,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert record["status"] == "OK" and record["request"]["user_id"] == "someone"
    assert [i["item_id"] for i in record["response"]["items"]] == items


def test_bundles_list_shows_versions_models_and_metrics_newest_first(tiny_bundle_path: Path, tmp_path: Path) -> None:
    parent = tmp_path / "bundles"
    parent.mkdir()
    shutil.copytree(tiny_bundle_path, parent / "good")
    (parent / "broken").mkdir()
    (parent / "broken" / "manifest.json").write_text("{not json")
    (parent / "not-a-bundle").mkdir()

    listed = encore("bundles", "list", "--dir", str(parent), "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert {Path(r["path"]).name for r in rows} == {"good", "broken"}
    good = next(r for r in rows if Path(r["path"]).name == "good")
    manifest = json.loads((tiny_bundle_path / "manifest.json").read_text())
    assert good["version"] == manifest["version"] and good["default_model"] == manifest["default_model"]
    assert good["models"] == [m["version"] for m in manifest["models"]]
    assert "not valid JSON" in next(r for r in rows if Path(r["path"]).name == "broken")["problem"]

    table = encore("bundles", "list", "--dir", str(parent))
    assert table.stdout.splitlines()[0].split()[:3] == ["version", "created", "items"]
    assert f"{manifest['default_model']}*" in table.stdout
    missing = encore("bundles", "list", "--dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "--dir" in missing.stderr and "Traceback" not in missing.stderr


def test_help_shows_defaults() -> None:
    shown = encore("build", "--help")
    assert "(default: 20000)" in shown.stdout and "default: synthetic" in shown.stdout
    replay = encore("replay", "--help")
    assert "(default: 16)" in replay.stdout
