"""Every ``encore`` command ends with one line and a documented exit code, never a traceback.

Real processes: two servers on one port, a taken metrics port, malformed Redis URLs, targets that
do not answer, stdout closed under the command (``encore … | head -1``), unknown flags.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.harness import ServerProcess, free_port, start_server, stop_server
from tests.support import REPO

#: Modules ``encore serve`` must never import: offline experiment work, training, the load tools.
OFFLINE_MODULES = (
    "offline",
    "loadtests",
    "models.training",
    "models.build",
)


def encore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert last_line(result) == line, result.stderr


@pytest.fixture(scope="module")
def plain_server(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = start_server(tiny_bundle_path, tmp_path_factory.mktemp("cli-server"))
    yield server
    stop_server(server)


def test_a_second_server_on_a_taken_port_ends_with_one_line_and_exit_2(
    plain_server: ServerProcess, tiny_bundle_path: Path, tmp_path: Path
) -> None:
    port = plain_server.port
    result = encore(
        "serve", "--bundle", str(tiny_bundle_path), "--port", str(port), "--no-metrics",
        "--exposure-log-dir", str(tmp_path / "exposures"),
    )  # fmt: skip
    assert_one_line_error(result, 2, f"encore serve: port: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert plain_server.process.poll() is None  # the first server is untouched


def test_a_taken_metrics_port_ends_with_one_line_and_exit_2(
    plain_server: ServerProcess, tiny_bundle_path: Path, tmp_path: Path
) -> None:
    taken = plain_server.metrics_port
    result = encore(
        "serve", "--bundle", str(tiny_bundle_path), "--port", "0", "--metrics-port", str(taken),
        "--exposure-log-dir", str(tmp_path / "exposures"),
    )  # fmt: skip
    assert_one_line_error(
        result, 2, f"encore serve: metrics_port: cannot listen on 127.0.0.1:{taken}: Address already in use"
    )


def test_workers_on_a_taken_port_are_refused_before_any_worker_starts(
    plain_server: ServerProcess, tiny_bundle_path: Path
) -> None:
    port = plain_server.port
    result = encore(
        "serve", "--bundle", str(tiny_bundle_path), "--port", str(port), "--no-metrics", "--workers", "2",
        "--redis-url", "redis://127.0.0.1:1/0",
    )  # fmt: skip
    assert_one_line_error(result, 2, f"encore serve: port: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert "worker 0 started" not in result.stderr


def test_serve_imports_no_offline_code(plain_server: ServerProcess, tiny_bundle_path: Path, tmp_path: Path) -> None:
    """Everything ``encore serve`` imports up to binding its port (it then fails on the taken port)."""
    probe = (
        "import sys\n"
        "from cli.main import main\n"
        "code = main(sys.argv[1:])\n"
        f"print(' '.join(m for m in sys.modules if m.startswith({OFFLINE_MODULES!r})))\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [
            sys.executable, "-c", probe, "serve", "--bundle", str(tiny_bundle_path), "--port",
            str(plain_server.port), "--no-metrics", "--exposure-log-dir", str(tmp_path / "exposures"),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "bundle tiny-0 ready" in result.stderr  # it got as far as serving
    assert result.stdout.split() == []


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("foo://127.0.0.1:6379/0", "foo://127.0.0.1:6379/0: the scheme must be one of"),
        ("redis://:s3cret@127.0.0.1:notaport/0", "redis://:***@127.0.0.1:notaport/0"),
        ("redis+cluster://", "redis+cluster://: no cluster seed nodes"),
    ],
)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_malformed_redis_url_ends_with_one_line_and_exit_2(
    tiny_bundle_path: Path, tmp_path: Path, url: str, shown: str, workers: str
) -> None:
    result = encore(
        "serve", "--bundle", str(tiny_bundle_path), "--port", "0", "--no-metrics", "--redis-url", url,
        "--workers", workers, "--exposure-log-dir", str(tmp_path / "exposures"),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr
    assert last_line(result).startswith(f"encore serve: invalid redis url {shown}"), result.stderr


def test_redis_that_does_not_answer_when_loading_features_ends_with_one_line_and_exit_2(
    tiny_bundle_path: Path, tmp_path: Path
) -> None:
    dead = free_port()
    result = encore(
        "serve", "--bundle", str(tiny_bundle_path), "--port", "0", "--no-metrics", "--load-features",
        "--redis-url", f"redis://127.0.0.1:{dead}/0", "--exposure-log-dir", str(tmp_path / "exposures"),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert last_line(result).startswith(f"encore serve: redis://127.0.0.1:{dead}/0 load_snapshot: "), result.stderr


@pytest.mark.parametrize("command", [("rank", "--user-id", "u1"), ("admin", "status")], ids=["rank", "admin"])
def test_an_unreachable_target_ends_with_one_line_and_exit_2(command: tuple[str, ...]) -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = encore(*command, "--target", dead, "--timeout", "2")
    label = " ".join(command[:2]) if command[0] == "admin" else "rank"
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert last_line(result).startswith(f"encore {label}: {dead}: unreachable ("), result.stderr


def test_a_server_that_answers_with_an_error_is_a_failed_command_not_an_unreachable_one(
    plain_server: ServerProcess,
) -> None:
    result = encore("rank", "--user-id", "", "--target", plain_server.target)
    assert_one_line_error(result, 1, "encore rank: INVALID_ARGUMENT: user_id: must not be empty")


def test_rank_prints_its_table_against_a_live_server(plain_server: ServerProcess) -> None:
    result = encore("rank", "--user-id", "u1", "--limit", "3", "--target", plain_server.target)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("request ") and "bundle tiny-0" in lines[0]
    assert any(line.split()[:1] == ["pos"] for line in lines)


def many_problems(path: Path) -> Path:
    """An experiments file with thousands of problems: about 1 MB of ``validate`` output."""
    path.write_text("experiments:\n" + "  - {}\n" * 3000)
    return path


def test_output_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    bad = many_problems(tmp_path / "bad.yaml")
    script = f'"{sys.executable}" -m cli experiments validate "{bad}" | head -1; echo "exit=${{PIPESTATUS[0]}}" >&2'
    env = {**os.environ, "PYTHONUNBUFFERED": ""}  # block-buffered, as outside a terminal by default
    result = subprocess.run(["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert result.stdout == f"{bad}: 15000 problem(s)\n"
    assert result.stderr == "exit=141\n"  # no traceback, no "Exception ignored … BrokenPipeError"


@pytest.mark.parametrize(
    ("args", "unbuffered"),
    [
        (("experiments", "validate", "{file}"), ""),
        (("experiments", "validate", "{file}"), "1"),
        (("serve", "--help"), ""),
        (("bench", "--help"), ""),
    ],
    ids=["validate", "validate-unbuffered", "serve-help", "bench-help"],
)
def test_a_stdout_closed_before_the_first_write_ends_quietly_with_exit_141(
    tmp_path: Path, args: tuple[str, ...], unbuffered: str
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("experiments: []\n")
    argv = [a.format(file=good) for a in args]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes anything
    try:
        result = subprocess.run(
            [sys.executable, "-m", "cli", *argv],
            cwd=REPO,
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=120,
            env={**os.environ, "PYTHONUNBUFFERED": unbuffered},
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr.decode()
    assert result.stderr == b""


@pytest.mark.parametrize(
    "args",
    [
        ("serve",),
        ("build",),
        ("rank", "--user-id", "u1"),
        ("admin", "status"),
        ("experiments", "validate", "x.yaml"),
        ("bench",),
        ("replay", "--log", "captures", "--target", "127.0.0.1:1"),
    ],
    ids=lambda a: "-".join(a[:2]),
)
def test_an_unknown_flag_is_a_usage_error_with_exit_2(args: tuple[str, ...]) -> None:
    result = encore(*args, "--no-such-flag")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert last_line(result).endswith("error: unrecognized arguments: --no-such-flag"), result.stderr


def test_a_port_held_by_any_process_is_reported_the_same_way(tiny_bundle_path: Path, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = encore(
            "serve", "--bundle", str(tiny_bundle_path), "--port", str(port), "--no-metrics",
            "--exposure-log-dir", str(tmp_path / "exposures"),
        )  # fmt: skip
    assert_one_line_error(result, 2, f"encore serve: port: cannot listen on 127.0.0.1:{port}: Address already in use")


def test_experiments_import_history_export_against_a_store(tmp_path: Path) -> None:
    store = f"file://{tmp_path / 'store'}"
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(
        "experiments:\n  - {key: cap, surface: home, coverage: 1.0, status: running, start: 2026-01-01,\n"
        "     metrics: {primary: stream, guardrails: [skip], users_per_arm: 1000, max_days: 14},\n"
        "     variants: [{key: a, weight: 0.5}, {key: b, weight: 0.5, params: {diversity_cap: 3}}]}\n"
    )
    bad.write_text(good.read_text().replace("weight: 0.5}, {", "weight: 0.7}, {"))
    unjudged = tmp_path / "unjudged.yaml"
    unjudged.write_text(good.read_text().replace("guardrails: [skip]", "guardrails: []"))
    traffic = ("--users-per-day", "10000")

    def imports(path: Path, author: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return encore("experiments", "import", str(path), "--store", store, "--author", author, "--reason", "x", *extra)

    refused_gate = imports(unjudged, "a", *traffic)
    assert refused_gate.returncode == 1 and "cap: metrics.guardrails: at least one guardrail" in refused_gate.stdout
    unpowered = imports(good, "a")
    assert unpowered.returncode == 1 and "cap: no traffic estimate for its surface" in unpowered.stdout
    imported = imports(good, "alice", *traffic)
    assert imported.returncode == 0 and "committed revision 1 (based on 0) by alice" in imported.stdout
    refused = imports(bad, "bob", *traffic)
    assert refused.returncode == 1 and "weights must sum to 1, got 1.2" in refused.stdout
    late = imports(good, "bob", "--base=0", *traffic)
    assert_one_line_error(
        late,
        2,
        "encore experiments import: revision conflict: the change was based on revision 0, but the head is now 1; "
        "re-read it and apply the change again",
    )
    listed = json.loads(encore("experiments", "history", "--store", store, "--json").stdout)
    assert [(r["revision"], r["author"], r["reason"], r["experiments"]) for r in listed] == [(1, "alice", "x", 1)]
    exported = tmp_path / "exported.yaml"
    assert encore("experiments", "export", "--store", store, "--out", str(exported)).returncode == 0
    assert encore("experiments", "validate", str(exported)).returncode == 0  # round trip through the validator
