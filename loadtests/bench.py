"""The Encore benchmark (``make bench``, ``encore bench``, ``python -m loadtests.bench``).

For each bundle (default: the 1,000,000-item synthetic catalog and the real HetRec data; either is
built first when missing), in one run:

a. the component floor — FAISS search, Redis ``get_user``, one ONNX batch of the candidate count —
   each timed alone in this process (``loadtests.floor``);
b. server-side per-stage and end-to-end latency from ``RankRequest(debug=True)`` timings over a
   warm closed-loop run, and the ratio server total p50 / floor (target ≤ 1.5×);
c. client-observed latency under an open-loop constant arrival rate from a separate process
   (``loadtests.openloop``), stepping the rate up to find the highest rate held at p99 ≤ 25 ms
   with < 1 % errors and < 1 % degraded answers (the sustained rate); then a longer run at a
   steady rate (default half the sustained rate) against the 15 ms p99 target;
d. resident memory of the server and each of its worker processes (``/proc/<pid>/smaps_rollup``).

The servers run with Redis features (a ``redis-server`` started here on a free port) and a settings
file giving both surfaces 500 ANN candidates plus the top popularity items (~500 reach the scorer;
counted offline by the floor). Prints a table per bundle and writes ``<out>/bench.json``; server
logs and the open-loop results go next to it. With ``--profile`` (needs ``py-spy`` on PATH or in
the venv) the server is sampled for ``--profile-seconds`` under the steady rate and the top frames
are printed and written. Timings depend on the machine and its other load; they are reported,
never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from loadtests.openloop import summarize

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "hetrec2011-lastfm-2k"
DEFAULT_RATES = (50, 100, 150, 200, 300, 400, 500, 600, 800, 1000)
STAGES = ("user_features", "retrieval", "filters", "candidate_features", "scoring", "selection", "total")

#: Targets from DESIGN.md "Performance targets".
FLOOR_RATIO_TARGET = 1.5
SUSTAINED_P99_MS = 25.0
STEADY_P99_TARGET_MS = 15.0
MAX_ERROR_RATIO = 0.01
MAX_DEGRADED_RATIO = 0.01


# ---------------------------------------------------------------------------------------------
# Pure helpers (unit-tested in tests/unit/test_bench_stats.py)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepVerdict:
    held: bool
    reasons: tuple[str, ...]


def judge_step(
    result: Mapping[str, Any],
    *,
    p99_limit_ms: float = SUSTAINED_P99_MS,
    max_error_ratio: float = MAX_ERROR_RATIO,
    max_degraded_ratio: float = MAX_DEGRADED_RATIO,
) -> StepVerdict:
    """Did an open-loop step hold its rate? p99 ≤ limit, errors and degraded answers under their caps."""
    reasons: list[str] = []
    p99 = float(result["latency_ms"]["p99"])
    if math.isnan(p99) or p99 > p99_limit_ms:
        reasons.append(f"p99 {p99:.1f} ms > {p99_limit_ms:g} ms")
    if float(result["error_ratio"]) >= max_error_ratio:
        reasons.append(f"errors {100 * float(result['error_ratio']):.1f} % >= {100 * max_error_ratio:g} %")
    if float(result["degraded_ratio"]) >= max_degraded_ratio:
        reasons.append(f"degraded {100 * float(result['degraded_ratio']):.1f} % >= {100 * max_degraded_ratio:g} %")
    return StepVerdict(held=not reasons, reasons=tuple(reasons))


def should_continue(held: Sequence[bool], max_consecutive_failures: int = 2) -> bool:
    """Keep stepping the rate up until ``max_consecutive_failures`` steps in a row failed.

    One failure is allowed to be noise (the machine is shared); two in a row end the search.
    """
    run = 0
    for ok in reversed(held):
        if ok:
            break
        run += 1
    return run < max_consecutive_failures


def sustained_rate(steps: Sequence[tuple[float, bool]]) -> float | None:
    """The highest rate that held among ``(rate, held)`` steps; ``None`` when none held."""
    held = [rate for rate, ok in steps if ok]
    return max(held) if held else None


def steady_rate(sustained: float | None, rates: Sequence[float], fraction: float = 0.5) -> float:
    """The operating point for the p99 target: ``fraction`` of the sustained rate, rounded down to
    a multiple of 10 (at least 10); the lowest stepped rate when nothing held."""
    if sustained is None:
        return float(min(rates))
    return float(max(10, int(sustained * fraction) // 10 * 10))


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` as ``{field: kB}`` (only the ``Name: <n> kB`` lines)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    return fields


def memory_mib(fields: Mapping[str, int]) -> dict[str, float]:
    """Rss, Pss, private (clean + dirty) and shared (clean + dirty) in MiB from smaps_rollup kB."""
    kib = 1024.0
    return {
        "rss": fields.get("Rss", 0) / kib,
        "pss": fields.get("Pss", 0) / kib,
        "private": (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / kib,
        "shared": (fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0)) / kib,
        "swap": fields.get("Swap", 0) / kib,
    }


def parse_ppid(stat_text: str) -> int:
    """The parent pid from ``/proc/<pid>/stat`` (the command name may hold spaces and parentheses)."""
    after = stat_text[stat_text.rindex(")") + 2 :].split()
    return int(after[1])


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """Every process below ``root`` in ``{pid: ppid}``, breadth first, sorted per level."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    frontier = [root]
    while frontier:
        nxt: list[int] = []
        for pid in frontier:
            kids = sorted(children.get(pid, []))
            out.extend(kids)
            nxt.extend(kids)
        frontier = nxt
    return out


#: Where a waiting (not working) thread's deepest Python frame or native leaf stops. py-spy's own
#: idle detection is unreliable in containers, so idle samples are recognised by these.
IDLE_PYTHON_FRAMES = (
    "EpollSelector.select (",
    "Condition.wait (",
    "Event.wait (",
    "Thread._wait_for_tstate_lock (",
    "_worker (concurrent/futures/thread.py:81)",  # ThreadPoolExecutor worker: work_queue.get(block=True)
    "SimpleQueue.get (",
    "Queue.get (",
    "BaseServer.serve_forever (",  # prometheus_client's HTTP thread
    "_PollLikeSelector.select (",
    "_poll_wrapper (",
)
IDLE_NATIVE_LEAVES = ("epoll_wait", "epoll_pwait", "poll (", "pthread_cond_", "sem_wait", "sem_timedwait", "futex")
PROJECT_PACKAGES = ("cli/", "serving/", "ranking/", "features/", "models/", "loadtests/")
#: The entry point's frames (the ``encore`` command) are on every main-thread sample; left out of "total".
ENTRY_FILES = ("cli/",)


#: Threads that block inside C under ``Thread.run`` (grpc's cython poller): idle when that is the leaf.
IDLE_C_THREADS = ("(_poll_wrapper)", "(serve_forever)")


def _is_idle(frames: Sequence[str], thread: str = "-") -> bool:
    if frames[-1].startswith("Thread.run (") and thread.endswith(IDLE_C_THREADS):
        return True
    if any(marker in frames[-1] for marker in IDLE_NATIVE_LEAVES):
        return True
    python = [f for f in frames if _frame_file(f).endswith(".py")]
    return bool(python) and any(python[-1].startswith(marker) for marker in IDLE_PYTHON_FRAMES)


def _split_stack(stack: str) -> tuple[str, list[str]]:
    """(thread label, frames root first) of one collapsed py-spy stack."""
    frames = [f for f in stack.split(";") if f]
    thread = "-"
    while frames and (frames[0].startswith("process ") or frames[0].startswith("thread (")):
        head = frames.pop(0)
        if head.startswith("thread ("):
            label = head.split(": ", 1)[1] if ": " in head else head
            thread = label.rstrip("0123456789").rstrip("_-") or label
    return thread, frames


def top_frames(collapsed: str, n: int = 15) -> dict[str, Any]:
    """Summarise py-spy ``--format raw`` output (collapsed stacks, optionally with ``--threads``).

    Samples whose leaf is a wait (``IDLE_LEAVES``) are idle. Returns the busy share, busy samples
    per thread (digits stripped, so the executor's threads add up), the top ``n`` leaf frames of
    busy samples ("self"), and the top ``n`` project frames (``PROJECT_PACKAGES``) by the share of
    busy samples they are on the stack of ("total"). Shares are of busy samples; line numbers are
    dropped from names so a function counts once.
    """
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = busy = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, frames = _split_stack(stack)
        if not frames:
            continue
        samples += count
        if _is_idle(frames, thread):
            continue
        busy += count
        threads[thread] += count
        self_counts[_frame_name(frames[-1])] += count
        project = {_frame_name(f) for f in frames if _frame_file(f).startswith(PROJECT_PACKAGES)}
        for name in project:
            if not _frame_file(name).startswith(ENTRY_FILES):
                total_counts[name] += count
    share = (lambda c: c / busy) if busy else (lambda c: 0.0)
    return {
        "samples": samples,
        "busy_share": busy / samples if samples else 0.0,
        "threads": [(t, share(c)) for t, c in threads.most_common()],
        "self": [(f, share(c)) for f, c in self_counts.most_common(n)],
        "total": [(f, share(c)) for f, c in total_counts.most_common(n)],
    }


def _frame_file(frame: str) -> str:
    _, sep, where = frame.partition(" (")
    return where.rstrip(")").rsplit(":", 1)[0] if sep else ""


def _frame_name(frame: str) -> str:
    name, sep, _ = frame.partition(" (")
    if not sep:
        return frame.strip()
    file = _frame_file(frame)
    return f"{name} ({file})" if file else name


# ---------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------


def _log(line: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {line}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(process: subprocess.Popen[Any], grace_s: float = 15.0, group: bool = False) -> None:
    """SIGTERM (the process group when it was started as one), then SIGKILL after ``grace_s``."""
    if process.poll() is not None:
        return
    sender = (lambda sig: os.killpg(process.pid, sig)) if group else process.send_signal
    with contextlib.suppress(ProcessLookupError):
        sender(signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            sender(signal.SIGKILL)
        process.wait(timeout=10)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway ``redis-server`` on a free loopback port without persistence; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server is not installed (`make system-packages` installs it)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"bench: redis-server did not start on port {port}") from None
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process, grace_s=5)


def _flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def encore_server(
    bundle: Path, redis_url: str, config: Path, workdir: Path, log_path: Path, workers: int, timeout_s: float = 600.0
) -> Iterator[Server]:
    """``encore serve`` as a subprocess (its own process group); yields once gRPC health says SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    port, metrics_port = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "cli",
        "serve",
        "--bundle",
        str(bundle),
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--redis-url",
        redis_url,
        "--load-features",
        "--config",
        str(config),
        "--exposure-log-dir",
        str(workdir / "exposures"),
    ]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    log_file = log_path.open("wb")
    process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, port, log_path)
    try:
        started = time.monotonic()
        with grpc.insecure_channel(server.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"encore serve exited with {process.returncode}:\n{_tail(log_path)}")
                if time.monotonic() - started > timeout_s:
                    raise RuntimeError(f"encore serve not SERVING after {timeout_s:.0f} s:\n{_tail(log_path)}")
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.25)
        _log(f"server pid {process.pid} SERVING on {server.target} after {time.monotonic() - started:.1f} s")
        yield server
    finally:
        _stop(process, group=True)
        log_file.close()


def process_memory(root: int) -> list[dict[str, Any]]:
    """smaps_rollup of ``root`` and all its descendants (pid, role, command, MiB figures)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = parse_ppid((entry / "stat").read_text())
    out: list[dict[str, Any]] = []
    for pid in [root, *descendants(root, parents)]:
        try:
            fields = parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        out.append({"pid": pid, "role": "main" if pid == root else "child", "cmd": cmdline[:120], **memory_mib(fields)})
    return out


# ---------------------------------------------------------------------------------------------
# Bundles and workload
# ---------------------------------------------------------------------------------------------


def _build_command(name: str, bundles_dir: Path, data_path: Path) -> list[str] | None:
    base = [sys.executable, "-m", "cli", "build", "--version", name, "--out", str(bundles_dir)]
    if name == "synthetic-1m":
        return [*base, "--n-items", "1000000", "--n-users", "20000"]
    if name == "hetrec-bench":
        return [*base, "--dataset", "hetrec", "--data-path", str(data_path)]
    return None


def ensure_bundle(name: str, bundles_dir: Path, data_path: Path) -> Path | None:
    """The bundle's path, building it first when it is missing; ``None`` (with a message) to skip it."""
    path = bundles_dir / name
    if (path / "manifest.json").is_file():
        return path
    cmd = _build_command(name, bundles_dir, data_path)
    if cmd is None:
        _log(f"skipping {name}: no bundle at {path} and no recipe to build it")
        return None
    if name == "hetrec-bench" and not (data_path / "user_artists.dat").is_file():
        _log(f"skipping {name}: the HetRec data is not at {data_path} (pass --data-path)")
        return None
    _log(f"building {name} (first run only): {' '.join(cmd[1:])}")
    if name == "synthetic-1m":
        _log("  the 1,000,000-item bundle takes a few minutes and ~550 MB on disk")
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


def settings_yaml(retrieval_size: int, popularity_size: int, shadow_model: str | None = None) -> str:
    lines = ["# written by loadtests.bench", "surfaces:"]
    shadow = f", shadow_model: {shadow_model}" if shadow_model else ""
    for surface in ("home", "now_playing"):
        lines.append(f"  {surface}: {{retrieval_size: {retrieval_size}, popularity_size: {popularity_size}{shadow}}}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Measurements against a running server
# ---------------------------------------------------------------------------------------------


def closed_loop(target: str, workload: Path, requests: int, warmup: int, seed: int = 1) -> dict[str, Any]:
    """Warm closed-loop ``Rank(debug=True)`` per surface: server stage timings and client latency."""
    import grpc
    import numpy as np

    from encore.v1 import ranking_pb2 as pb
    from encore.v1 import ranking_pb2_grpc as pb_grpc
    from loadtests.openloop import zipf_probabilities

    data = json.loads(workload.read_text(encoding="utf-8"))
    users, seeds = data["users"], data["seeds"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users))
    total = requests + warmup
    picks = order[rng.choice(len(users), size=total, p=np.asarray(zipf_probabilities(len(users), 1.0)))]
    seed_picks = rng.integers(0, len(seeds), size=total)
    report: dict[str, Any] = {}
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        for name, surface in (("home", pb.SURFACE_HOME), ("now_playing", pb.SURFACE_NOW_PLAYING)):
            stages: dict[str, list[float]] = {s: [] for s in STAGES}
            client: list[float] = []
            degraded: Counter[str] = Counter()
            for i in range(total):
                request = pb.RankRequest(
                    user_id=users[int(picks[i])],
                    surface=surface,
                    seed_item_id=seeds[int(seed_picks[i])] if surface == pb.SURFACE_NOW_PLAYING else "",
                    debug=True,
                )
                started = time.perf_counter()
                response = stub.Rank(request, timeout=2.0)
                elapsed = (time.perf_counter() - started) * 1000.0
                if i < warmup:
                    continue
                client.append(elapsed)
                degraded.update(response.degraded)
                for t in response.timings:
                    stages.setdefault(t.stage, []).append(t.milliseconds)
            report[name] = {
                "requests": requests,
                "degraded": dict(degraded),
                "stages_ms": {s: summarize(v) for s, v in stages.items() if v},
                "client_ms": summarize(client),
            }
    return report


def run_openloop(
    targets: Sequence[str],
    workload: Path,
    rate: float,
    duration: float,
    warmup: float,
    deadline_ms: float,
    channels: int,
    out: Path,
    seed: int,
) -> dict[str, Any]:
    """One open-loop step in a separate process; its JSON result."""
    cmd = [sys.executable, "-m", "loadtests.openloop", "--workload", str(workload), "--rate", f"{rate:g}"]
    for t in targets:
        cmd += ["--target", t]
    cmd += [
        "--duration",
        f"{duration:g}",
        "--warmup",
        f"{warmup:g}",
        "--deadline-ms",
        f"{deadline_ms:g}",
        "--channels",
        str(channels),
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    completed = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 120)
    if completed.returncode != 0:
        raise RuntimeError(f"openloop at {rate:g}/s failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return result


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.is_file() else None


def profile_server(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """Sample the server (and its worker processes) with py-spy; top frames by self and total share."""
    binary = _py_spy()
    if binary is None:
        return {"error": "py-spy not found (pip install py-spy; it is not a project dependency)"}
    base = [binary, "record", "--pid", str(pid), "--duration", f"{int(seconds)}", "--rate", "100"]
    base += ["--format", "raw", "--subprocesses", "--threads", "-o", str(out)]
    attempts = [base]
    errors: list[str] = []
    for cmd in attempts:
        completed = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        if completed.returncode == 0 and out.is_file() and out.stat().st_size > 0:
            frames = top_frames(out.read_text(encoding="utf-8", errors="replace"))
            return {"native": "--native" in cmd, "file": str(out), **frames}
        errors.append(completed.stderr.strip()[-500:])
    return {"error": "py-spy failed: " + " | ".join(errors)}


@contextlib.contextmanager
def _background_openloop(
    targets: Sequence[str], workload: Path, rate: float, seconds: float, deadline_ms: float, channels: int, out: Path
) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-m", "loadtests.openloop", "--workload", str(workload), "--rate", f"{rate:g}"]
    for t in targets:
        cmd += ["--target", t]
    cmd += ["--duration", f"{seconds:g}", "--warmup", "1", "--deadline-ms", f"{deadline_ms:g}"]
    cmd += ["--channels", str(channels), "--out", str(out)]
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        try:
            process.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            _stop(process)


# ---------------------------------------------------------------------------------------------
# One bundle
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    rates: tuple[float, ...]
    step_seconds: float
    step_warmup: float
    steady_seconds: float
    steady_rate: float | None
    closed_requests: int
    closed_warmup: int
    floor_iterations: int
    deadline_ms: float
    channels: int
    workers: int
    retrieval_size: int
    popularity_size: int
    onnx_rows: int
    profile: bool
    profile_seconds: float
    shadow_model: str | None = None


def bench_bundle(name: str, bundle: Path, redis_url: str, plan: Plan, out_dir: Path) -> dict[str, Any]:
    import gc

    from loadtests.floor import measure_floor

    result: dict[str, Any] = {"bundle": name, "path": str(bundle)}
    _flush_redis(redis_url)
    _log(f"{name}: component floor (in-process, nothing else running)")
    result["floor"] = measure_floor(
        bundle,
        redis_url,
        retrieval_size=plan.retrieval_size,
        popularity_size=plan.popularity_size,
        batch_rows=plan.onnx_rows,
        iterations=plan.floor_iterations,
        progress=lambda line: _log(f"{name}: {line}"),
    )
    gc.collect()  # the floor's copy of the bundle is garbage now; free it before the server starts
    with tempfile.TemporaryDirectory(prefix=f"encore-bench-{name}-") as tmp:
        workdir = Path(tmp)
        config = workdir / "settings.yaml"
        config.write_text(settings_yaml(plan.retrieval_size, plan.popularity_size, plan.shadow_model), encoding="utf-8")
        workload = out_dir / f"workload-{name}.json"
        result["workload"] = write_workload(bundle, workload)
        log_path = out_dir / f"server-{name}.log"
        _log(f"{name}: starting encore serve ({plan.workers} worker(s)); log {log_path}")
        with encore_server(bundle, redis_url, config, workdir, log_path, plan.workers) as server:
            result["server_pid"] = server.process.pid
            result["memory_idle"] = process_memory(server.process.pid)
            _log(f"{name}: closed loop, {plan.closed_requests} requests per surface (debug timings)")
            result["server_side"] = closed_loop(server.target, workload, plan.closed_requests, plan.closed_warmup)
            result["ratio_vs_floor"] = {
                s: result["server_side"][s]["stages_ms"]["total"]["p50"] / result["floor"]["floor_p50_ms"][s]
                for s in ("home", "now_playing")
            }
            steps: list[dict[str, Any]] = []
            held: list[bool] = []
            for i, rate in enumerate(plan.rates):
                step = run_openloop(
                    [server.target],
                    workload,
                    rate,
                    plan.step_seconds,
                    plan.step_warmup,
                    plan.deadline_ms,
                    plan.channels,
                    out_dir / f"openloop-{name}-{rate:g}.json",
                    seed=100 + i,
                )
                verdict = judge_step(step)
                step["held"], step["why_not"] = verdict.held, list(verdict.reasons)
                steps.append(step)
                held.append(verdict.held)
                lat = step["latency_ms"]
                outcome = "held" if verdict.held else "; ".join(verdict.reasons)
                _log(
                    f"{name}: {rate:>6g}/s  p50 {lat['p50']:6.2f}  p99 {lat['p99']:7.2f} ms  "
                    f"errors {100 * step['error_ratio']:.1f} %  {outcome}"
                )
                if not should_continue(held):
                    break
            result["steps"] = steps
            sustained = sustained_rate([(s["rate"], s["held"]) for s in steps])
            result["sustained_rate"] = sustained
            under_target = [s["rate"] for s in steps if s["held"] and s["latency_ms"]["p99"] <= STEADY_P99_TARGET_MS]
            result["highest_rate_p99_under_15ms"] = max(under_target) if under_target else None
            rate = plan.steady_rate if plan.steady_rate is not None else steady_rate(sustained, plan.rates)
            _log(f"{name}: steady rate {rate:g}/s for {plan.steady_seconds:g} s")
            steady = run_openloop(
                [server.target],
                workload,
                rate,
                plan.steady_seconds,
                plan.step_warmup,
                plan.deadline_ms,
                plan.channels,
                out_dir / f"openloop-{name}-steady.json",
                seed=7,
            )
            steady["held"] = judge_step(steady).held
            steady["meets_15ms"] = steady["held"] and steady["latency_ms"]["p99"] <= STEADY_P99_TARGET_MS
            result["steady"] = steady
            result["memory_loaded"] = process_memory(server.process.pid)
            if plan.profile:
                _log(f"{name}: py-spy on pid {server.process.pid} for {plan.profile_seconds:g} s at {rate:g}/s")
                with _background_openloop(
                    [server.target],
                    workload,
                    rate,
                    plan.profile_seconds + 2,
                    plan.deadline_ms,
                    plan.channels,
                    out_dir / f"openloop-{name}-profile.json",
                ):
                    time.sleep(1.0)
                    result["profile"] = profile_server(
                        server.process.pid, plan.profile_seconds, out_dir / f"profile-{name}.txt"
                    )
    return result


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _f(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def format_report(r: Mapping[str, Any], plan: Plan) -> str:
    fl = r["floor"]
    comp = fl["components_ms"]
    cand = fl["candidates_to_scorer"]
    lines: list[str] = []
    w = lines.append
    w("")
    w(
        f"=== {r['bundle']}: {fl['n_items']:,} items, {fl['n_users']:,} users, {fl['index']}"
        + (f" nprobe {fl['nprobe']}" if fl["nprobe"] else "")
        + f", retrieval {fl['retrieval_size']} + popularity {fl['popularity_size']}"
        + f" (~{cand['home']['mean']:.0f} home / ~{cand['now_playing']['mean']:.0f} now_playing candidates reach"
        + f" the scorer), Redis features, {plan.workers} worker(s) ==="
    )
    w("")
    w("(a) component floor, each alone in-process              p50 ms   p99 ms")
    labels = {
        "faiss_search_home": f"FAISS search k={fl['retrieval_size']} (home query)",
        "faiss_search_now_playing": f"FAISS search k={fl['retrieval_size']} (now_playing query)",
        "redis_get_user": "Redis get_user (1 pipelined round trip)",
        "onnx_batch": f"ONNX {fl['onnx_model']} batch [{fl['onnx_rows']} x N_RANKER_FEATURES]",
    }
    for key, label in labels.items():
        w(f"  {label:<52} {_f(comp[key]['p50']):>7}  {_f(comp[key]['p99']):>7}")
    floor = fl["floor_p50_ms"]
    w(f"  {'floor = sum of p50s (home / now_playing)':<52} {_f(floor['home']):>7}  / {_f(floor['now_playing'])}")
    w("")
    ss = r.get("server_side")
    if ss:
        n = ss["home"]["requests"]
        w(f"(b) server-side stages, closed loop, debug timings, {n} requests/surface")
        w(f"  {'stage':<22} {'home p50':>9} {'home p99':>9} {'np p50':>9} {'np p99':>9}")
        for stage in STAGES:
            h = ss["home"]["stages_ms"].get(stage)
            p = ss["now_playing"]["stages_ms"].get(stage)
            if h is None or p is None:
                continue
            w(f"  {stage:<22} {_f(h['p50']):>9} {_f(h['p99']):>9} {_f(p['p50']):>9} {_f(p['p99']):>9}")
        hc, pc = ss["home"]["client_ms"], ss["now_playing"]["client_ms"]
        w(f"  {'client-observed':<22} {_f(hc['p50']):>9} {_f(hc['p99']):>9} {_f(pc['p50']):>9} {_f(pc['p99']):>9}")
        deg = {s: ss[s]["degraded"] for s in ("home", "now_playing") if ss[s]["degraded"]}
        if deg:
            w(f"  degraded answers: {deg}")
        ratio = r["ratio_vs_floor"]
        w(
            f"  server total p50 / floor: home {ratio['home']:.2f}x  now_playing {ratio['now_playing']:.2f}x"
            f"   (target <= {FLOOR_RATIO_TARGET}x: home {_mark(ratio['home'] <= FLOOR_RATIO_TARGET)},"
            f" now_playing {_mark(ratio['now_playing'] <= FLOOR_RATIO_TARGET)})"
        )
        w("")
    steps = r.get("steps")
    if steps:
        s0 = steps[0]
        w(
            f"(c) open loop from a separate process: constant arrival, {s0['duration_s']:g} s/step after"
            f" {s0['warmup_s']:g} s warm-up, deadline {s0['deadline_ms']:g} ms, {s0['channels']} channels,"
            " Zipfian users, 50/50 surfaces"
        )
        w(
            f"  {'rate/s':>7} {'sent':>6} {'err%':>5} {'degr%':>5} {'p50':>7} {'p90':>7} {'p99':>7} {'p99.9':>7}"
            f" {'max':>7} {'srv p50':>7} {'srv p99':>7} {'lag p99':>7} {'cli cpu':>7}  held"
        )
        for s in [*steps, r["steady"]]:
            lat, srv = s["latency_ms"], s["server_total_ms"]
            label = f"{s['rate']:g}" + ("*" if s is r["steady"] else "")
            why = "" if s["held"] else "  (" + "; ".join(judge_step(s).reasons) + ")"
            w(
                f"  {label:>7} {s['sent']:>6} {100 * s['error_ratio']:>5.1f} {100 * s['degraded_ratio']:>5.1f}"
                f" {_f(lat['p50']):>7} {_f(lat['p90']):>7} {_f(lat['p99']):>7} {_f(lat['p999']):>7}"
                f" {_f(lat['max']):>7} {_f(srv['p50']):>7} {_f(srv['p99']):>7} {_f(s['send_lag_ms']['p99']):>7}"
                f" {100 * s['client_cpu_share']:>6.0f}%  {'yes' if s['held'] else 'no'}{why}"
            )
        w("  (ms; latency from the scheduled send time; srv = the server's own total; lag = generator send lag;")
        w("   * = the steady-rate run)")
        sustained = r["sustained_rate"]
        w(
            f"  sustained rate (p99 <= {SUSTAINED_P99_MS:g} ms, errors < 1 %, degraded < 1 %): "
            + (f"{sustained:g} req/s" if sustained is not None else "none of the stepped rates held")
        )
        st = r["steady"]
        w(
            f"  steady rate {st['rate']:g} req/s for {st['duration_s']:g} s: client p50 {_f(st['latency_ms']['p50'])}"
            f" p99 {_f(st['latency_ms']['p99'])} ms (target <= {STEADY_P99_TARGET_MS:g} ms: {_mark(st['meets_15ms'])})"
        )
        hi = r.get("highest_rate_p99_under_15ms")
        w(f"  highest stepped rate with p99 <= {STEADY_P99_TARGET_MS:g} ms: " + (f"{hi:g} req/s" if hi else "none"))
        w("")
    mem = r.get("memory_loaded") or r.get("memory_idle")
    if mem:
        w("(d) resident memory after the load steps (smaps_rollup, MiB)")
        w(f"  {'pid':>8} {'role':<6} {'rss':>8} {'pss':>8} {'private':>8} {'shared':>8}  command")
        for m in mem:
            w(
                f"  {m['pid']:>8} {m['role']:<6} {m['rss']:>8.0f} {m['pss']:>8.0f} {m['private']:>8.0f}"
                f" {m['shared']:>8.0f}  {m['cmd'][:60]}"
            )
        w("")
    prof = r.get("profile")
    if prof:
        if "error" in prof:
            w(f"(profile) {prof['error']}")
        else:
            w(
                f"(profile) py-spy {'--native ' if prof['native'] else ''}under load: {prof['samples']} samples,"
                f" {100 * prof['busy_share']:.0f} % busy ({prof['file']})"
            )
            w("  busy samples by thread: " + ", ".join(f"{t} {100 * x:.0f} %" for t, x in prof["threads"][:6]))
            titles = {"self": "leaf frames (self), % of busy samples", "total": "project frames on the stack (total)"}
            for kind, title in titles.items():
                w(f"  {title}:")
                for frame, share in prof[kind][:12]:
                    w(f"    {100 * share:5.1f}%  {frame[:110]}")
        w("")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _host() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": list(os.getloadavg()),
        "machine": platform.machine(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    return info


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="encore bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bundles", default="synthetic-1m,hetrec-bench", help="comma-separated bundle names")
    p.add_argument("--bundles-dir", type=Path, default=Path("bundles"), help="where bundles live / are built")
    p.add_argument("--data-path", type=Path, default=DEFAULT_DATA, help="HetRec data for hetrec-bench")
    p.add_argument("--rates", help="comma-separated open-loop rates, req/s (default: 50,100,...,1000)")
    p.add_argument("--step-seconds", type=float, default=10.0, help="measured seconds per rate step")
    p.add_argument("--step-warmup", type=float, default=2.0, help="warm-up seconds before each step")
    p.add_argument("--steady-rate", type=float, help="rate for the p99 <= 15 ms check (default: sustained / 2)")
    p.add_argument("--steady-seconds", type=float, default=20.0)
    p.add_argument("--closed-requests", type=int, default=1000, help="closed-loop requests per surface")
    p.add_argument("--floor-iterations", type=int, default=1000)
    p.add_argument("--deadline-ms", type=float, default=100.0, help="per-request deadline of the open loop")
    p.add_argument("--channels", type=int, help="open-loop gRPC channels (default: max(4, 2 x workers))")
    p.add_argument("--workers", type=int, default=1, help="encore serve --workers (passed only when > 1)")
    p.add_argument("--retrieval-size", type=int, default=500)
    p.add_argument("--popularity-size", type=int, default=20)
    p.add_argument("--onnx-rows", type=int, default=500, help="rows of the ONNX floor batch")
    p.add_argument("--profile", action="store_true", help="sample the server with py-spy under the steady rate")
    p.add_argument("--profile-seconds", type=float, default=20.0)
    p.add_argument(
        "--shadow-model", help="shadow-score every request with this model (to show shadowing adds no latency)"
    )
    p.add_argument("--quick", action="store_true", help="tiny durations: a smoke run, not a measurement")
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="directory for bench.json and logs")
    return p


def _plan(args: argparse.Namespace) -> Plan:
    rates = tuple(float(r) for r in args.rates.split(",")) if args.rates else tuple(float(r) for r in DEFAULT_RATES)
    if not rates or min(rates) <= 0 or list(rates) != sorted(rates):
        raise SystemExit("bench: --rates must be positive and increasing")
    if args.workers < 1:
        raise SystemExit("bench: --workers must be >= 1")
    plan = Plan(
        rates=rates,
        step_seconds=args.step_seconds,
        step_warmup=args.step_warmup,
        steady_seconds=args.steady_seconds,
        steady_rate=args.steady_rate,
        closed_requests=args.closed_requests,
        closed_warmup=max(10, args.closed_requests // 10),
        floor_iterations=args.floor_iterations,
        deadline_ms=args.deadline_ms,
        channels=args.channels or max(4, 2 * args.workers),
        workers=args.workers,
        retrieval_size=args.retrieval_size,
        popularity_size=args.popularity_size,
        onnx_rows=args.onnx_rows,
        profile=args.profile,
        profile_seconds=args.profile_seconds,
        shadow_model=args.shadow_model,
    )
    if args.quick:
        plan = Plan(
            **{
                **plan.__dict__,
                "rates": rates[:2] if args.rates is None else rates,
                "step_seconds": 1.0,
                "step_warmup": 0.5,
                "steady_seconds": 1.0,
                "closed_requests": 30,
                "closed_warmup": 5,
                "floor_iterations": 30,
                "profile_seconds": min(plan.profile_seconds, 3.0),
            }
        )
    return plan


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    plan = _plan(args)
    names = [n.strip() for n in args.bundles.split(",") if n.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "bench.json"
    started = time.monotonic()
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": _host(),
        "plan": {**plan.__dict__, "rates": list(plan.rates)},
        "targets": {
            "server_p50_over_floor_max": FLOOR_RATIO_TARGET,
            "sustained_p99_ms": SUSTAINED_P99_MS,
            "steady_p99_ms": STEADY_P99_TARGET_MS,
            "max_error_ratio": MAX_ERROR_RATIO,
            "max_degraded_ratio": MAX_DEGRADED_RATIO,
        },
        "bundles": {},
        "skipped": [],
    }
    bundles: list[tuple[str, Path]] = []
    for name in names:
        path = ensure_bundle(name, args.bundles_dir, args.data_path)
        if path is None:
            report["skipped"].append(name)
        else:
            bundles.append((name, path))
    texts: list[str] = []
    with redis_server() as redis_url:
        _log(f"redis at {redis_url}")
        for name, path in bundles:
            result = bench_bundle(name, path, redis_url, plan, args.out)
            report["bundles"][name] = result
            texts.append(format_report(result, plan))
            _write_json(json_path, report)
            _log(f"{name}: done; results so far in {json_path}")
    report["elapsed_s"] = time.monotonic() - started
    _write_json(json_path, report)
    _print_summary(report, texts, sys.stdout)
    _log(f"written {json_path} ({report['elapsed_s']:.0f} s)")
    return 0


def _write_json(path: Path, report: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(_jsonable(report), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _print_summary(report: Mapping[str, Any], texts: Sequence[str], out: TextIO) -> None:
    print("\n==================== Encore benchmark ====================", file=out)
    host = report["host"]
    print(
        f"host: {host.get('cpu_model', '?')}, {host['cpus']} CPUs, load average at start "
        + " ".join(f"{x:.2f}" for x in host["loadavg_at_start"]),
        file=out,
    )
    for name in report["skipped"]:
        print(f"skipped: {name}", file=out)
    for text in texts:
        print(text, file=out)


if __name__ == "__main__":
    sys.exit(main())
