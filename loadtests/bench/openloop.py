"""Open-loop load generator for ``Rank``: a constant arrival rate, run as its own process.

    python -m loadtests.bench.openloop --target 127.0.0.1:50051 --workload workload.json --rate 200 \
        --duration 10 [--warmup 2] [--deadline-ms 100] [--channels 4] [--out result.json]

Request *i* is scheduled at ``start + i / rate`` (absolute time) and sent then whether or not
earlier requests have answered, so a slow server cannot slow the generator down (no coordinated
omission). Latency is measured from the *scheduled* send time to the answer, so time a request
spent waiting for the generator itself is charged to the request, never hidden. A pacing thread
times the sends (``time.sleep`` is precise to tens of µs; asyncio timers only to 1 ms); the RPCs
run on the asyncio event loop over ``--channels`` channels. ``send_lag``
(actual send − scheduled send) is reported so a saturated generator is visible.

Users are drawn Zipfian (bounded, exponent ``--zipf``) over the workload's users, surfaces
Home/Now Playing by ``--home-share``, Now Playing seeds uniformly from the workload's popular items.
The workload file is JSON ``{"users": [...], "seeds": [...]}`` (``loadtests.bench.workload`` writes it).

Output (stdout or ``--out``): JSON with sent, ok, degraded, errors by status code, latency
percentiles over every measured request (failed ones at their elapsed time), over successful
ones and per error status code (``error_latency_ms``), send-lag percentiles, the generator's
own CPU use and the OK answers including the warm-up's (``ok_including_warmup``). Requests
scheduled during the warm-up are sent but not counted.

``run_openloop`` and ``background_openloop`` run this module as that separate process (the benchmark
calls them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests.stats import summarize, zipf_probabilities


@dataclass
class Tally:
    """What happened to the measured requests."""

    latencies_ms: list[float] = field(default_factory=list)  # every measured request, from scheduled time
    ok_latencies_ms: list[float] = field(default_factory=list)
    send_lag_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    degraded: int = 0
    by_surface: dict[str, list[float]] = field(default_factory=dict)
    server_total_ms: list[float] = field(default_factory=list)  # the server's own "total" (debug timings)
    error_latencies_ms: dict[str, list[float]] = field(default_factory=dict)  # per status code
    ok_all: int = 0  # OK answers including the warm-up's (for CPU per request over the whole run)


def _plan(workload: dict[str, Any], n: int, zipf: float, home_share: float, seed: int) -> list[tuple[str, int, str]]:
    """``n`` (user_id, surface, seed_item_id) tuples, fixed by ``seed`` (drawn before the clock starts)."""
    import numpy as np

    users: list[str] = list(workload["users"])
    seeds: list[str] = list(workload["seeds"])
    if not users or not seeds:
        raise SystemExit("openloop: the workload needs users and seeds")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(users))  # which user is "hot" is arbitrary, not the file order
    ranks = rng.choice(len(users), size=n, p=np.asarray(zipf_probabilities(len(users), zipf)))
    homes = rng.random(n) < home_share
    seed_picks = rng.integers(0, len(seeds), size=n)
    return [
        (users[int(order[int(r)])], bool(h), "" if h else seeds[int(s)])
        for r, h, s in zip(ranks, homes, seed_picks, strict=True)
    ]


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    import grpc

    from encore.v1 import ranking_pb2 as pb
    from encore.v1 import ranking_pb2_grpc as pb_grpc

    workload = json.loads(Path(args.workload).read_text(encoding="utf-8"))
    total_s = args.warmup + args.duration
    n = max(1, round(total_s * args.rate))
    n_warm = round(args.warmup * args.rate)
    plan = _plan(workload, n, args.zipf, args.home_share, args.seed)
    requests = [
        pb.RankRequest(
            user_id=u,
            surface=pb.SURFACE_HOME if home else pb.SURFACE_NOW_PLAYING,
            seed_item_id=seed,
            request_id=f"ol-{i}",
            debug=args.server_timings,
        )
        for i, (u, home, seed) in enumerate(plan)
    ]
    targets: list[str] = args.target
    channels = [
        grpc.aio.insecure_channel(
            targets[c % len(targets)],
            # a private subchannel pool per channel: K channels are K TCP connections, so a
            # multi-process server (SO_REUSEPORT) sees its connections spread over its workers
            options=[("grpc.use_local_subchannel_pool", 1), ("encore.loadtest_channel", c)],
        )
        for c in range(args.channels)
    ]
    stubs = [pb_grpc.RankingServiceStub(ch) for ch in channels]
    for ch in channels:
        await asyncio.wait_for(ch.channel_ready(), timeout=10)
    tally = Tally()
    timeout_s = args.deadline_ms / 1000.0

    async def one(i: int, scheduled: float) -> None:
        sent = time.perf_counter()
        request = requests[i]
        try:
            response = await stubs[i % len(stubs)].Rank(request, timeout=timeout_s)
            code = None
            degraded = bool(response.degraded)
            server_total = next((t.milliseconds for t in response.timings if t.stage == "total"), None)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            degraded = False
            server_total = None
        done = time.perf_counter()
        tally.ok_all += code is None
        if i < n_warm:
            return
        latency = (done - scheduled) * 1000.0
        tally.latencies_ms.append(latency)
        tally.send_lag_ms.append((sent - scheduled) * 1000.0)
        tally.by_surface.setdefault("home" if request.surface == pb.SURFACE_HOME else "now_playing", []).append(latency)
        if code is None:
            tally.ok += 1
            tally.degraded += degraded
            tally.ok_latencies_ms.append(latency)
            if server_total is not None:
                tally.server_total_ms.append(server_total)
        else:
            tally.errors[code] += 1
            tally.error_latencies_ms.setdefault(code, []).append(latency)

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    all_launched = asyncio.Event()
    start = time.perf_counter() + 0.05
    interval = 1.0 / args.rate

    def launch(i: int, scheduled: float) -> None:
        task = loop.create_task(one(i, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def pace() -> None:
        # A thread paces the sends: time.sleep wakes within tens of µs, the event loop's own timers
        # only to the millisecond (epoll), which would add up to 1 ms to every measured latency.
        for i in range(n):
            scheduled = start + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            loop.call_soon_threadsafe(launch, i, scheduled)
        loop.call_soon_threadsafe(all_launched.set)

    pacer = threading.Thread(target=pace, name="openloop-pacer", daemon=True)
    pacer.start()
    await all_launched.wait()
    send_done = time.perf_counter()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout_s + 5.0)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for ch in channels:
        await ch.close(None)
    measured = n - n_warm
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    lost = measured - len(tally.latencies_ms)
    if lost > 0:
        tally.errors["NO_ANSWER"] += lost
    errors = sum(tally.errors.values())
    return {
        "rate": args.rate,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "deadline_ms": args.deadline_ms,
        "channels": args.channels,
        "targets": targets,
        "sent": measured,
        "ok": tally.ok,
        "degraded": tally.degraded,
        "errors": dict(tally.errors),
        "error_ratio": errors / measured if measured else 0.0,
        "degraded_ratio": tally.degraded / measured if measured else 0.0,
        "achieved_send_rate": n / max(send_done - start, 1e-9),
        "latency_ms": summarize(tally.latencies_ms),
        "ok_latency_ms": summarize(tally.ok_latencies_ms),
        "latency_ms_by_surface": {k: summarize(v) for k, v in sorted(tally.by_surface.items())},
        "server_total_ms": summarize(tally.server_total_ms),
        "error_latency_ms": {code: summarize(v) for code, v in sorted(tally.error_latencies_ms.items())},
        "ok_including_warmup": tally.ok_all,
        "send_lag_ms": summarize(tally.send_lag_ms),
        "client_cpu_share": cpu_s / max(time.perf_counter() - start, 1e-9),
    }


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loadtests.bench.openloop", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--target", action="append", required=True, help="HOST:PORT (repeat for several servers)")
    p.add_argument("--workload", type=Path, required=True, help='JSON {"users": [...], "seeds": [...]}')
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds sent at the same rate before measuring")
    p.add_argument("--deadline-ms", type=float, default=100.0, help="per-request gRPC deadline")
    p.add_argument("--channels", type=int, default=4, help="gRPC channels (TCP connections), round robin")
    p.add_argument("--zipf", type=float, default=1.0, help="Zipf exponent over users (0 = uniform)")
    p.add_argument("--home-share", type=float, default=0.5, help="share of Home requests (rest Now Playing)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-server-timings",
        dest="server_timings",
        action="store_false",
        help="do not set RankRequest.debug (by default the server's own total is collected too)",
    )
    p.add_argument("--out", type=Path, help="write the JSON result here instead of stdout")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.warmup < 0 or args.channels < 1:
        raise SystemExit("openloop: --rate, --duration and --channels must be positive, --warmup >= 0")
    result = asyncio.run(_run(args))
    text = json.dumps(result, indent=2, allow_nan=True)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


# ---------------------------------------------------------------------------------------------
# Driving this module as a separate process (from the benchmark)


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
    home_share: float | None = None,
) -> dict[str, Any]:
    """One open-loop step in a separate process; its JSON result (``home_share``: None = the default mix)."""
    cmd = [sys.executable, "-m", "loadtests.bench.openloop", "--workload", str(workload), "--rate", f"{rate:g}"]
    if home_share is not None:
        cmd += ["--home-share", f"{home_share:g}"]
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


@contextlib.contextmanager
def background_openloop(
    targets: Sequence[str], workload: Path, rate: float, seconds: float, deadline_ms: float, channels: int, out: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """An open loop running in a separate process for the ``with`` block (waited for at its end)."""
    cmd = [sys.executable, "-m", "loadtests.bench.openloop", "--workload", str(workload), "--rate", f"{rate:g}"]
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
            from loadtests.harness import stop_process  # here: the generator process never needs it

            stop_process(process)


if __name__ == "__main__":
    sys.exit(main())
