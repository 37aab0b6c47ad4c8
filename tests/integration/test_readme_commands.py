"""The README cannot drift: every command in its ``bash`` blocks is run here or needs what a test cannot have.

Each command line (continuations joined, comments dropped) of every fenced ``bash`` block either
runs offline — then it runs as written, in README order, from a scratch directory holding the
repository's ``examples/`` and must exit 0 — or matches one of ``NEEDS`` (a running server, the
network, minutes of work), which says why it is not run. A command that is neither fails the test,
so a new README command must be made runnable or classified. The README's experiments YAML must
validate and every experiment in it must be active now (no stop date already past).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from serving.experiments.config import parse_experiments

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
STORE = Path("/tmp/encore-experiments")  # the README's file:// store, written by its import command

#: Command prefixes not run here, and why.
NEEDS: dict[str, str] = {
    "make ": "the set-up and the whole suite (make run, make check) — this test is part of them",
    ".venv/bin/encore rank": "a running server",
    "grpcurl": "a running server (and grpcurl)",
    ".venv/bin/python -m loadtests.bench": "minutes of benchmarking",
    "git worktree": "a second checkout for the before/after benchmark",
    "pip install": "installs into the reader's environment (test_client_package.py does it in a fresh venv)",
    "encore serve": "it serves until stopped",
    "encore build": "minutes of training (test_build_* and test_spark_build build bundles)",
    ".venv/bin/encore serve": "it serves until stopped",
    "podman run": "a built image (make image-test runs one)",
    "docker run": "a container runtime and an image from a registry (Jaeger)",
    "printf 'tracing: true": "writes the settings file of the serve command after it",
    "ENCORE_PORT=": "it serves until stopped (tests/e2e/test_health_logs_env.py sets settings by environment)",
    "encore experiments serve": "it serves until stopped",
    "export ENCORE_EXPERIMENTS_TOKEN": "part of the experimentation-service session (a running server)",
    "BUNDLE=": "part of the experimentation-service session (a running server)",
    "sleep ": "part of the experimentation-service session (a running server)",
    "encore experiments plan": "the experimentation service (encore experiments serve)",
    "encore experiments create": "the experimentation service (encore experiments serve)",
    "encore experiments start": "the experimentation service (encore experiments serve)",
    "encore experiments list": "the experimentation service (encore experiments serve)",
    "encore experiments simulate": "a server run of a whole simulated experiment (tests/e2e runs it)",
}


def bash_commands(text: str) -> list[str]:
    """Every command line in the README's ``bash`` blocks, continuations joined, comments dropped."""
    commands: list[str] = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            commands.append(line)
    return commands


def needs(command: str) -> str | None:
    return next((why for prefix, why in NEEDS.items() if command.startswith(prefix)), None)


def test_every_readme_command_runs_or_says_why_not(tmp_path: Path) -> None:
    commands = bash_commands(README.read_text(encoding="utf-8"))
    assert len(commands) > 20  # the extraction found the blocks
    runnable = [c for c in commands if needs(c) is None]
    unknown = [c for c in runnable if not c.startswith("encore ")]
    assert not unknown, f"README commands neither runnable here nor classified in NEEDS: {unknown}"
    assert any("experiments analyze" in c for c in runnable) and any("growthbook-import" in c for c in runnable)

    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.rmtree(STORE, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for command in runnable:
        argv = [sys.executable, "-m", "cli", *shlex.split(command, comments=True)[1:]]
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"README command failed (exit {done.returncode}): {command}\n{done.stderr}"
        assert "Traceback" not in done.stderr, command
    assert (tmp_path / "report.html").is_file() and (tmp_path / "imported.yaml").is_file()


def test_the_readme_experiments_file_is_valid_and_active_now() -> None:
    text = README.read_text(encoding="utf-8")
    documents = [yaml.safe_load(b) for b in re.findall(r"^```yaml\n(.*?)^```", text, flags=re.S | re.M)]
    experiment_files = [d for d in documents if isinstance(d, dict) and {"experiments", "layers"} & set(d)]
    assert experiment_files, "the README shows an experiments file"
    example = yaml.safe_load((REPO / "examples" / "experiments.yaml").read_text(encoding="utf-8"))
    assert example in experiment_files  # the README shows the example file itself
    now = dt.datetime.now(dt.UTC)
    for document in experiment_files:
        config = parse_experiments(document, source="README.md")
        for experiment in config.all_experiments:
            assert experiment.stop is None or experiment.stop > now, f"{experiment.key} stopped already"
            if experiment.status.value == "running":
                assert experiment.start is None or experiment.start <= now


@pytest.mark.parametrize("command", ["encore rank --user-id u1", "encore experiments simulate", "make run"])
def test_commands_needing_a_server_are_recognised(command: str) -> None:
    assert needs(command.replace("encore rank", ".venv/bin/encore rank")) is not None
