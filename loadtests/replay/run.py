"""Replay captured traffic against a primary, a candidate and a secondary, and diff the answers.

    encore replay --log captures/ --target HOST:PORT [--candidate HOST:PORT] [--secondary HOST:PORT]
                  [--speed 2.0 | --rate N] [--concurrency 16] [--deadline-ms 200] [--limit N] [--k 10]
                  [--json] [--report-json report.json] [--max-rbo-drop 0.1] [--min-overlap 0.8]
                  [--max-p99-increase-ms 10] [--max-error-rate 0.01] [--max-degraded-rate 0.01] [--quiet]

Reads the ``encore.v1.CapturedRank`` files the server writes (``serving.capture``), orders them by
arrival time and re-sends each captured ``RankRequest`` — same user, surface, seed, limit and
context; ``debug`` off; the request id suffixed ``~replay-<run>`` so server logs tell replayed
traffic apart — to every target at the same moment (one asyncio task per target, launched
together), at the recorded inter-arrival times divided by ``--speed`` or at a fixed ``--rate``.
At most ``--concurrency`` requests are in flight per target: when the bound is reached, sending
waits (the send lag is reported). Every call carries a ``--deadline-ms`` gRPC deadline. Requests
whose captured status was an error are replayed too (the error comparison covers them).

The diff, the noise floor and the thresholds are ``loadtests.replay.shadow_diff``'s (see its docstring).
A progress line goes to stderr (rewritten in place on a terminal, every few seconds otherwise).

Exit status: 0 every threshold passed (or no candidate to gate), 1 a threshold was crossed,
2 bad input — unreadable or corrupt log, no captures, a target unreachable at start or answering
no request at all.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc

from common.cli_help import show_defaults
from common.errors import EncoreError
from encore.v1 import capture_pb2
from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.replay.shadow_diff import Outcome, Thresholds, build_report, format_report
from loadtests.stats import jsonable, percentile
from serving.capture import CaptureFormatError, read_captures
from serving.requests import MAX_REQUEST_ID_LENGTH

ROLES: tuple[str, ...] = ("primary", "candidate", "secondary")
SURFACE_NAMES = {pb.SURFACE_HOME: "home", pb.SURFACE_NOW_PLAYING: "now_playing"}


class ReplayInputError(EncoreError):
    """Bad input: the message is printed as is and the command exits 2."""


# ---------------------------------------------------------------------------------------------
# Captures and schedule


def load_captures(paths: Sequence[Path], limit: int | None = None) -> list[capture_pb2.CapturedRank]:
    """The first ``limit`` captures under ``paths`` (files or directories), ordered by arrival time."""
    try:
        captures = list(itertools.islice(read_captures(paths), limit))
    except (OSError, CaptureFormatError) as exc:
        raise ReplayInputError(f"cannot read the capture log: {exc}") from exc
    if not captures:
        raise ReplayInputError(f"no captured requests in {', '.join(str(p) for p in paths)}")
    return sorted(captures, key=lambda c: c.ts_ms)  # stable: ties keep file order


def schedule(ts_ms: Sequence[int], *, speed: float | None = None, rate: float | None = None) -> list[float]:
    """Send offsets in seconds from the start: recorded gaps / ``speed``, or ``i / rate``."""
    if rate is not None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        return [i / rate for i in range(len(ts_ms))]
    factor = 1.0 if speed is None else speed
    if factor <= 0:
        raise ValueError("speed must be positive")
    if not ts_ms:
        return []
    first = ts_ms[0]
    return [max(0.0, (t - first) / 1000.0 / factor) for t in ts_ms]


def replay_request(captured: pb.RankRequest, run_id: str, index: int) -> pb.RankRequest:
    """The captured request as it is re-sent: debug off, request id suffixed with the run id."""
    request = pb.RankRequest()
    request.CopyFrom(captured)
    request.debug = False
    suffix = f"~replay-{run_id}"
    base = captured.request_id or f"capture-{index}"
    request.request_id = base[: MAX_REQUEST_ID_LENGTH - len(suffix)] + suffix
    return request


def outcome_of(response: pb.RankResponse, latency_ms: float) -> Outcome:
    return Outcome(
        status="OK",
        latency_ms=latency_ms,
        item_ids=tuple(i.item_id for i in response.items),
        scores=tuple(float(i.score) for i in response.items),
        degraded=tuple(response.degraded),
        model_version=response.model_version,
        bundle_version=response.bundle_version,
    )


# ---------------------------------------------------------------------------------------------
# Progress


class Progress:
    """``replay  sent 57/100  done 55  failed calls 2`` on stderr: in place on a TTY, every few seconds otherwise."""

    def __init__(self, total: int, stream: TextIO | None, interval_s: float | None = None) -> None:
        self.total = total
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.interval_s = interval_s if interval_s is not None else (0.1 if self.tty else 5.0)
        self.sent = self.done = self.errors = 0
        self._last = -math.inf

    def update(self, *, sent: int = 0, done: int = 0, errors: int = 0) -> None:
        self.sent += sent
        self.done += done
        self.errors += errors
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._write(final=False)

    def close(self) -> None:
        self._write(final=True)

    def _write(self, *, final: bool) -> None:
        if self.stream is None:
            return
        width = len(str(self.total))
        line = (
            f"replay  sent {self.sent:{width}d}/{self.total}  done {self.done:{width}d}/{self.total}"
            f" ({100.0 * self.done / max(1, self.total):5.1f} % done)  failed calls {self.errors}"
        )
        if self.tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------------------------
# The replay


@dataclass
class ReplayRun:
    outcomes: dict[str, list[Outcome]]  # role → one answer per capture, in capture order
    duration_s: float
    send_lag_ms: list[float]


async def _connect(targets: dict[str, str], timeout_s: float) -> dict[str, grpc.aio.Channel]:
    channels = {role: grpc.aio.insecure_channel(addr) for role, addr in targets.items()}
    try:
        for role, channel in channels.items():
            try:
                await asyncio.wait_for(channel.channel_ready(), timeout=timeout_s)
            except TimeoutError:
                raise ReplayInputError(
                    f"{role} {targets[role]}: unreachable (no connection within {timeout_s:g} s)"
                ) from None
    except BaseException:
        for channel in channels.values():
            await channel.close(grace=None)
        raise
    return channels


async def run_replay(
    requests: Sequence[pb.RankRequest],
    offsets_s: Sequence[float],
    targets: dict[str, str],
    *,
    concurrency: int,
    deadline_s: float,
    connect_timeout_s: float = 5.0,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ReplayRun:
    """Send ``requests[i]`` to every target at ``offsets_s[i]``; at most ``concurrency`` in flight per target."""
    channels = await _connect(targets, connect_timeout_s)
    stubs = {role: pb_grpc.RankingServiceStub(channel) for role, channel in channels.items()}
    n = len(requests)
    outcomes: dict[str, list[Outcome | None]] = {role: [None] * n for role in targets}
    send_lag_ms: list[float] = []
    slots = asyncio.Semaphore(concurrency)

    async def call(role: str, i: int) -> bool:
        started = clock()
        try:
            response = await stubs[role].Rank(requests[i], timeout=deadline_s)
            outcomes[role][i] = outcome_of(response, (clock() - started) * 1000.0)
            return True
        except grpc.aio.AioRpcError as exc:
            outcomes[role][i] = Outcome(
                status=exc.code().name, latency_ms=(clock() - started) * 1000.0, error=exc.details() or ""
            )
            return False

    async def one(i: int) -> None:
        try:
            results = await asyncio.gather(*(call(role, i) for role in targets))
        finally:
            slots.release()
        if progress is not None:
            progress.update(done=1, errors=sum(not ok for ok in results))

    tasks: list[asyncio.Task[None]] = []
    start = clock()
    try:
        for i, offset in enumerate(offsets_s):
            wait = start + offset - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            await slots.acquire()
            send_lag_ms.append(max(0.0, (clock() - start - offset) * 1000.0))
            tasks.append(asyncio.create_task(one(i)))
            if progress is not None:
                progress.update(sent=1)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for channel in channels.values():
            await channel.close(grace=None)
    duration = clock() - start
    if progress is not None:
        progress.close()
    complete: dict[str, list[Outcome]] = {}
    for role, answers in outcomes.items():
        complete[role] = [a if a is not None else Outcome(status="CANCELLED", latency_ms=0.0) for a in answers]
    return ReplayRun(complete, duration, send_lag_ms)


# ---------------------------------------------------------------------------------------------
# CLI


def _positive(kind: type[float] | type[int]) -> Callable[[str], Any]:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in 0..1, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    d = Thresholds()
    p = argparse.ArgumentParser(
        prog="encore replay",
        description="Replay captured Rank traffic against a primary, a candidate and a secondary; diff the answers "
        "above the primary-vs-secondary noise floor and gate on thresholds (exit 0 pass, 1 fail, 2 bad input).",
    )
    p.add_argument(
        "--log",
        type=Path,
        nargs="+",
        required=True,
        metavar="PATH",
        help="capture files (*.binpb) or directories holding them",
    )
    p.add_argument("--target", required=True, metavar="HOST:PORT", help="the primary (current version)")
    p.add_argument("--candidate", metavar="HOST:PORT", help="the version under test")
    p.add_argument(
        "--secondary",
        metavar="HOST:PORT",
        help="a second server running the primary's version: measures the noise floor",
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=_positive(float),
        default=None,
        help="recorded inter-arrival times divided by this (default 1.0: real time)",
    )
    pace.add_argument("--rate", type=_positive(float), default=None, help="send at a fixed rate, requests/s")
    p.add_argument("--concurrency", type=_positive(int), default=16, help="requests in flight per target")
    p.add_argument("--deadline-ms", type=_positive(float), default=200.0, help="gRPC deadline of each call")
    p.add_argument(
        "--connect-timeout-s",
        type=_positive(float),
        default=5.0,
        help="how long to wait for each target to accept a connection",
    )
    p.add_argument("--limit", type=_positive(int), default=None, help="replay only the first N captures")
    p.add_argument("--k", type=_positive(int), default=10, help="K of overlap@K")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout instead of text")
    p.add_argument("--report-json", type=Path, default=None, metavar="PATH", help="also write the JSON report here")
    p.add_argument(
        "--max-rbo-drop",
        type=_fraction,
        default=d.max_rbo_drop,
        help="max (1 − RBO) beyond noise, candidate vs primary",
    )
    p.add_argument(
        "--min-overlap",
        type=_fraction,
        default=d.min_overlap,
        help="min overlap@K, noise-adjusted",
    )
    p.add_argument(
        "--max-p99-increase-ms",
        type=float,
        default=d.max_p99_increase_ms,
        help="max candidate p99 − primary p99, beyond the secondary's",
    )
    p.add_argument(
        "--max-error-rate",
        type=_fraction,
        default=d.max_error_rate,
        help="max share of requests failing on the candidate only, beyond noise",
    )
    p.add_argument(
        "--max-degraded-rate",
        type=_fraction,
        default=d.max_degraded_rate,
        help="max share degraded on the candidate only, beyond noise",
    )
    p.add_argument("--quiet", action="store_true", help="no progress line; print only the verdict")
    return show_defaults(p)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args = parser().parse_args(argv)
    targets = {"primary": args.target}
    if args.candidate:
        targets["candidate"] = args.candidate
    if args.secondary:
        targets["secondary"] = args.secondary
    try:
        captures = load_captures(args.log, args.limit)
    except ReplayInputError as exc:
        print(f"encore replay: {exc}", file=err)
        return 2
    run_id = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    requests = [replay_request(c.request, run_id, i) for i, c in enumerate(captures)]
    ts = [c.ts_ms for c in captures]
    offsets = schedule(ts, speed=args.speed, rate=args.rate)
    progress = None if args.quiet else Progress(len(requests), err)
    try:
        run = asyncio.run(
            run_replay(
                requests,
                offsets,
                targets,
                concurrency=args.concurrency,
                deadline_s=args.deadline_ms / 1000.0,
                connect_timeout_s=args.connect_timeout_s,
                progress=progress,
            )
        )
    except ReplayInputError as exc:
        print(f"encore replay: {exc}", file=err)
        return 2
    for role, answers in run.outcomes.items():
        if not any(a.ok for a in answers):
            codes = Counter(a.status for a in answers)
            print(f"encore replay: {role} {targets[role]} answered no request ({_codes(codes)})", file=err)
            return 2
    meta = {
        "run_id": run_id,
        "captures": len(captures),
        "log": [str(p) for p in args.log],
        "targets": targets,
        "speed": None if args.rate is not None else (args.speed or 1.0),
        "rate": args.rate,
        "concurrency": args.concurrency,
        "deadline_ms": args.deadline_ms,
        "duration_s": run.duration_s,
        "recorded_span_s": (ts[-1] - ts[0]) / 1000.0,
        "send_lag_ms": {"p50": percentile(run.send_lag_ms, 50), "p99": percentile(run.send_lag_ms, 99)},
        "surfaces": dict(sorted(Counter(SURFACE_NAMES.get(r.surface, "unspecified") for r in requests).items())),
        "captured_status": dict(sorted(Counter(c.status or "unknown" for c in captures).items())),
    }
    thresholds = Thresholds(
        max_rbo_drop=args.max_rbo_drop,
        min_overlap=args.min_overlap,
        max_p99_increase_ms=args.max_p99_increase_ms,
        max_error_rate=args.max_error_rate,
        max_degraded_rate=args.max_degraded_rate,
    )
    report = jsonable(build_report(run.outcomes, k=args.k, thresholds=thresholds, replay=meta))
    text = json.dumps(report, indent=2, sort_keys=False) + "\n"
    out.write(text if args.json else format_report(report, verdict_only=args.quiet))
    out.flush()
    if args.report_json is not None:
        args.report_json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.report_json.with_name(f".{args.report_json.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.report_json)
    return 0 if report["passed"] else 1


def _codes(codes: Counter[str]) -> str:
    return ", ".join(f"{code} {n}" for code, n in codes.most_common())


if __name__ == "__main__":
    sys.exit(main())
