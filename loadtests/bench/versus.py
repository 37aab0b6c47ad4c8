"""(versus) Encore against the straight-line reference (``loadtests.reference``) on one bundle.

Home only (``--home-share 1``), the benchmark's candidate sizes, one Redis whose features the
first Encore server loads. Phase 1 runs three one-process servers side by side — Encore with its
shipped settings (cascade on), Encore with ``cascade_size: 0`` and the reference — and measures,
alternating blocks between them (the order reversed every other round) so drift on a shared
machine falls on all three alike:

a. server-side handler p50 from ``debug`` timings ("total") and the client round trip, closed loop;
b. CPU per request at a fixed open-loop rate well below saturation: the server process tree's
   utime + stime (``/proc/<pid>/stat``) before and after a run over its OK answers, Redis's
   beside it, and the load generator's own CPU share.

Phase 2 runs Encore (shipped) and the reference with ``--workers 2`` and measures (b) for them,
then (c) the sustained rate (p99 <= 25 ms, < 1 % errors) on a geometric rate ladder, both servers
at each step, each stopping at its first miss, and (d) Encore at 2x and 5x its sustained rate:
goodput, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED counts and latencies, capacity (formula in
``loadtests.bench.versus_report``), problem lines in its log, health after each step.
Nothing is asserted; the figures go in ``bench.json`` under "versus" and a table.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadtests.bench.closed_loop import Samples, closed_loop_samples
from loadtests.bench.cpu import cpu_delta, cpu_seconds, tree_cpu_seconds
from loadtests.bench.openloop import run_openloop
from loadtests.bench.plan import VersusPlan
from loadtests.bench.servers import encore_server, flush_redis, log, reference_server
from loadtests.bench.verdict import judge_step, sustained_rate
from loadtests.bench.versus_report import (
    CAPACITY_FORMULA,
    capacity_rps,
    count_problem_lines,
    cpu_per_request_ms,
    goodput_ratio,
    metric_total,
    pool_cpu,
    ratio,
)
from loadtests.bench.workload import settings_yaml, write_workload
from loadtests.harness import RedisProcess, ServerProcess
from loadtests.stats import percentile, summarize


class _Run:
    """What every measurement of one versus run shares."""

    def __init__(self, name: str, workload: Path, plan: VersusPlan, redis: RedisProcess, out_dir: Path) -> None:
        self.name, self.workload, self.plan, self.out_dir = name, workload, plan, out_dir
        assert redis.process is not None
        self.redis_pid = redis.process.pid
        self.workers: dict[int, int] = {}  # server pid -> its worker processes

    def openloop(self, server: ServerProcess, label: str, rate: float, warmup_s: float, seed: int) -> dict[str, Any]:
        """One Home-only open-loop run against ``server`` with the CPU of its process tree and of Redis;
        ``plan.channels`` connections per worker process."""
        p = self.plan
        pid = server.process.pid
        before, redis_before, started = tree_cpu_seconds(pid), cpu_seconds([self.redis_pid]), time.monotonic()
        step = run_openloop(
            [server.target],
            self.workload,
            rate,
            p.seconds,
            warmup_s,
            p.deadline_ms,
            p.channels * self.workers.get(pid, 1),
            self.out_dir / f"versus-{self.name}-{label}-{rate:g}.json",
            seed=seed,
            home_share=1.0,
        )
        used = cpu_delta(before, tree_cpu_seconds(pid))
        step["wall_s"] = time.monotonic() - started
        step["server_cpu_s"] = sum(used.values())
        step["worker_cpu_s"] = sorted((s for child, s in used.items() if child != pid), reverse=True)
        step["redis_cpu_s"] = sum(cpu_delta(redis_before, cpu_seconds([self.redis_pid])).values())
        step["errors_total"] = sum(step["errors"].values())
        step["cpu_ms_per_request"] = cpu_per_request_ms(step["server_cpu_s"], step["ok_including_warmup"])
        return step


def _alternating(names: list[str], round_index: int) -> list[str]:
    return names if round_index % 2 == 0 else names[::-1]


def latency(run: _Run, servers: Mapping[str, ServerProcess]) -> dict[str, Any]:
    """(a) interleaved closed-loop blocks, pooled per server, ratios to the reference."""
    p = run.plan
    pooled = {n: Samples() for n in servers}
    for r in range(p.rounds):
        for n in _alternating(list(servers), r):
            s = closed_loop_samples(servers[n].target, run.workload, "home", p.requests, p.warmup, seed=10 + r)
            for stage, values in s.stages.items():
                pooled[n].stages.setdefault(stage, []).extend(values)
            pooled[n].client.extend(s.client)
            pooled[n].degraded.update(s.degraded)
        log(
            f"versus (a) round {r + 1}/{p.rounds}: "
            + ", ".join(f"{n} {percentile(pooled[n].stages['total'], 50):.2f} ms" for n in servers)
        )
    out: dict[str, Any] = {
        n: {
            "server_total_ms": summarize(s.stages["total"]),
            "client_ms": summarize(s.client),
            "stages_p50_ms": {k: percentile(v, 50) for k, v in s.stages.items() if v and k != "total"},
            "degraded": dict(s.degraded),
        }
        for n, s in pooled.items()
    }
    ref = out["reference"]
    for n in servers:
        out[n]["server_ratio"] = ratio(out[n]["server_total_ms"]["p50"], ref["server_total_ms"]["p50"])
        out[n]["client_ratio"] = ratio(out[n]["client_ms"]["p50"], ref["client_ms"]["p50"])
    return out


def cpu(run: _Run, servers: Mapping[str, ServerProcess], reference: str) -> dict[str, Any]:
    """(b) interleaved open-loop runs at the CPU rate, pooled per server, ratios to ``reference``."""
    p = run.plan
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in servers}
    for r in range(p.cpu_rounds):
        for n in _alternating(list(servers), r):
            step = run.openloop(servers[n], f"cpu-{n}-{r}", p.cpu_rate, 0.0, seed=20 + r)
            runs[n].append(
                {
                    "ok": step["ok"],
                    "errors": step["errors_total"],
                    "server_cpu_s": step["server_cpu_s"],
                    "redis_cpu_s": step["redis_cpu_s"],
                    "wall_s": step["wall_s"],
                    "client_cpu_share": step["client_cpu_share"],
                    "ok_latency_ms": step["ok_latency_ms"],
                }
            )
            log(
                f"versus (b) {n} at {p.cpu_rate:g}/s: {step['ok']} ok, "
                f"{1000 * step['server_cpu_s'] / max(step['ok'], 1):.3f} CPU ms/request"
            )
    out = {n: {**pool_cpu(rs), "run_list": rs} for n, rs in runs.items()}
    for n in servers:
        out[n]["ratio"] = ratio(out[n]["cpu_ms_per_request"], out[reference]["cpu_ms_per_request"])
    return out


def sustained(run: _Run, servers: Mapping[str, ServerProcess]) -> dict[str, Any]:
    """(c) the rate ladder, every server still holding at each step, each stopping at its first miss."""
    p = run.plan
    steps: dict[str, list[dict[str, Any]]] = {n: [] for n in servers}
    active = list(servers)
    for i, rate in enumerate(p.rates):
        for n in list(active):
            step = run.openloop(servers[n], f"step-{n}", rate, p.warmup_s, seed=100 + i)
            verdict = judge_step(step)
            step["held"], step["why_not"] = verdict.held, list(verdict.reasons)
            steps[n].append(step)
            lat = step["latency_ms"]
            log(
                f"versus (c) {n} {rate:>6g}/s  p50 {lat['p50']:6.2f}  p99 {lat['p99']:7.2f} ms  errors "
                f"{100 * step['error_ratio']:.1f} %  {'held' if verdict.held else '; '.join(verdict.reasons)}"
            )
            if not verdict.held:
                active.remove(n)
        if not active:
            break
    out: dict[str, Any] = {}
    for n, ss in steps.items():
        held = sustained_rate([(s["rate"], s["held"]) for s in ss])
        at_rate = next((s["cpu_ms_per_request"] for s in ss if s["rate"] == held), None)
        out[n] = {"rate": held, "cpu_ms_per_request": at_rate, "steps": ss}
    out["ratio"] = ratio(out["encore_2w"]["rate"], out["reference_2w"]["rate"])
    return out


def _health(target: str) -> str:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        except grpc.RpcError as exc:
            return f"error {exc.code().name}"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def _server_counters(server: ServerProcess) -> dict[str, float | None]:
    """Encore's shed and expired request counters (all workers, from its metrics endpoint); None if unread."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {"shed": None, "expired": None}
    return {k: metric_total(text, f"encore_{k}_requests_total") for k in ("shed", "expired")}


def _counted(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _by_code(step: Mapping[str, Any], code: str) -> dict[str, Any]:
    latency = step["error_latency_ms"].get(code, {})
    return {"count": step["errors"].get(code, 0), "p50": latency.get("p50"), "p99": latency.get("p99")}


def overload(
    run: _Run, server: ServerProcess, base_rate: float, cpu_ms: float | None, cpu_ms_at_load: float | None
) -> dict[str, Any]:
    """(d) ``server`` at each overload multiple of ``base_rate``: goodput against the capacity from
    ``cpu_ms`` per request (and from ``cpu_ms_at_load``), refusals by code, log problems, health."""
    p = run.plan
    cores = len(os.sched_getaffinity(0))
    steps: list[dict[str, Any]] = []
    for multiple in p.overload:
        rate = round(base_rate * multiple)
        offset, counters = server.log_path.stat().st_size, _server_counters(server)
        step = run.openloop(server, f"overload-{multiple:g}x", rate, p.warmup_s, seed=300 + int(multiple))
        after = _server_counters(server)
        counted = {k: _counted(v, after[k]) for k, v in counters.items()}
        with server.log_path.open("rb") as fh:
            fh.seek(offset)
            problems = count_problem_lines(fh.read().decode(errors="replace"))
        codes = {code: _by_code(step, code) for code in ("RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "CANCELLED")}
        ok_per_s = step["ok"] / step["duration_s"]
        capacity = capacity_rps(cores, step["client_cpu_share"], cpu_ms)
        at_load = capacity_rps(cores, step["client_cpu_share"], cpu_ms_at_load)
        steps.append(
            {
                "multiple": multiple,
                "rate": rate,
                "achieved_send_rate": step["achieved_send_rate"],
                "send_lag_p99_ms": step["send_lag_ms"]["p99"],
                "degraded": step["degraded"],
                "sent": step["sent"],
                "ok": step["ok"],
                "ok_per_s": ok_per_s,
                "ok_latency_ms": step["ok_latency_ms"],
                "resource_exhausted": codes["RESOURCE_EXHAUSTED"],
                "deadline_exceeded": codes["DEADLINE_EXCEEDED"],
                "cancelled": codes["CANCELLED"],
                "other_errors": step["errors_total"] - sum(c["count"] for c in codes.values()),
                "server_shed": counted["shed"],  # warm-up included
                "server_expired": counted["expired"],
                "errors": step["errors"],
                "client_cpu_share": step["client_cpu_share"],
                "server_cpu_share": step["server_cpu_s"] / step["wall_s"],
                "cpu_ms_per_request": step["cpu_ms_per_request"],
                "capacity": capacity,
                "goodput_ratio": goodput_ratio(ok_per_s, capacity),
                "capacity_at_load": at_load,
                "goodput_ratio_at_load": goodput_ratio(ok_per_s, at_load),
                "log_problems": problems,
                "health": _health(server.target),
            }
        )
        log(f"versus (d) {multiple:g}x = {rate}/s: {ok_per_s:.0f} ok/s, errors {step['errors']}, {steps[-1]['health']}")
    return {
        "cores": cores,
        "formula": CAPACITY_FORMULA,
        "cpu_ms_per_request": cpu_ms,
        "cpu_ms_per_request_at_load": cpu_ms_at_load,
        "steps": steps,
    }


def run_versus(name: str, bundle: Path, redis: RedisProcess, plan: VersusPlan, out_dir: Path) -> dict[str, Any]:
    """Every part of the versus run on ``bundle`` (the module docstring); the "versus" JSON section."""
    flush_redis(redis.url)
    workload = out_dir / f"workload-{name}.json"
    write_workload(bundle, workload)
    run = _Run(name, workload, plan, redis, out_dir)
    result: dict[str, Any] = {"bundle": name, "path": str(bundle), "cores": len(os.sched_getaffinity(0))}
    result["plan"] = {**plan.__dict__, "rates": list(plan.rates), "overload": list(plan.overload)}
    with tempfile.TemporaryDirectory(prefix=f"encore-versus-{name}-") as tmp:
        shipped, no_cascade = Path(tmp) / "shipped.yaml", Path(tmp) / "no-cascade.yaml"
        shipped.write_text(settings_yaml(plan.retrieval_size, plan.popularity_size), encoding="utf-8")
        no_cascade.write_text(settings_yaml(plan.retrieval_size, plan.popularity_size, None, 0), encoding="utf-8")

        def start(stack: contextlib.ExitStack, label: str, config: Path | None, workers: int) -> ServerProcess:
            """Encore with ``config``, or the reference (``config`` None: the shipped sizes)."""
            log(f"versus: starting {label}")
            log_path = out_dir / f"versus-{name}-{label}.log"
            if config is None:
                server = stack.enter_context(reference_server(bundle, redis.url, shipped, log_path, workers))
            else:
                (Path(tmp) / label).mkdir()
                server = stack.enter_context(
                    encore_server(
                        bundle, redis.url, config, Path(tmp) / label, log_path, workers, checkout=plan.encore_checkout
                    )
                )
            run.workers[server.process.pid] = workers
            return server

        with contextlib.ExitStack() as stack:
            servers = {
                "encore": start(stack, "encore", shipped, 1),
                "encore_no_cascade": start(stack, "encore_no_cascade", no_cascade, 1),
                "reference": start(stack, "reference", None, 1),
            }
            result["latency"] = latency(run, servers)
            result["cpu"] = cpu(run, servers, "reference")
        with contextlib.ExitStack() as stack:
            servers = {
                "encore_2w": start(stack, "encore_2w", shipped, 2),
                "reference_2w": start(stack, "reference_2w", None, 2),
            }
            result["cpu"].update(cpu(run, servers, "reference_2w"))
            result["sustained"] = ladder = sustained(run, servers)
            result["overload"] = overload(
                run,
                servers["encore_2w"],
                ladder["encore_2w"]["rate"] or plan.rates[0],
                result["cpu"]["encore_2w"]["cpu_ms_per_request"],
                ladder["encore_2w"]["cpu_ms_per_request"],
            )
    return result
