"""The benchmark's run: argparse, one Redis for the run, per bundle the floor, a server, the closed
loop, the open-loop rate steps, the steady run, memory and the optional profile; then the versus
run against the straight-line reference (see the package docstring, which is also ``--help``)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import loadtests.bench
from common.cli_help import show_defaults
from loadtests.bench.closed_loop import closed_loop
from loadtests.bench.memory import process_memory
from loadtests.bench.openloop import background_openloop, run_openloop
from loadtests.bench.plan import DEFAULT_RATES, VERSUS_RATES, Plan, VersusPlan
from loadtests.bench.profiling import profile_server
from loadtests.bench.report import format_report, host_info, print_summary, write_json
from loadtests.bench.servers import encore_server, flush_redis, redis_server
from loadtests.bench.servers import log as _log
from loadtests.bench.verdict import (
    FLOOR_RATIO_TARGET,
    MAX_DEGRADED_RATIO,
    MAX_ERROR_RATIO,
    STEADY_P99_TARGET_MS,
    SUSTAINED_P99_MS,
    judge_step,
    should_continue,
    steady_rate,
    sustained_rate,
)
from loadtests.bench.versus import run_versus
from loadtests.bench.versus_report import format_versus
from loadtests.bench.workload import ensure_bundle, settings_yaml, write_workload
from loadtests.harness import REPO

DEFAULT_DATA = REPO.parent / "shared" / "data" / "hetrec2011-lastfm-2k"


def bench_bundle(name: str, bundle: Path, redis_url: str, plan: Plan, out_dir: Path) -> dict[str, Any]:
    """One bundle measured against ``redis_url``: floor, closed loop, rate steps, steady run, memory."""
    import gc

    from loadtests.bench.floor import measure_floor

    result: dict[str, Any] = {"bundle": name, "path": str(bundle)}
    flush_redis(redis_url)
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
        config.write_text(
            settings_yaml(plan.retrieval_size, plan.popularity_size, plan.shadow_model, plan.cascade_size),
            encoding="utf-8",
        )
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
                with background_openloop(
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="encore bench", description=loadtests.bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--bundles",
        help="comma-separated bundle names (default: synthetic-1m,hetrec-bench; with --quick: synthetic-20k)",
    )
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
    p.add_argument(
        "--cascade-size", type=int, help="scoring cascade size for both surfaces (0: off; default: the server's)"
    )
    p.add_argument("--quick", action="store_true", help="tiny durations: a smoke run, not a measurement")
    v = p.add_argument_group("versus: Encore against the straight-line reference (loadtests.reference)")
    v.add_argument("--no-versus", action="store_true", help="skip the versus run")
    v.add_argument("--versus-only", action="store_true", help="only the versus run (its bundle must be in --bundles)")
    v.add_argument("--versus-bundle", default="hetrec-bench", help="the bundle of the versus run")
    v.add_argument("--versus-rounds", type=int, default=5, help="(a) interleaved closed-loop rounds")
    v.add_argument("--versus-requests", type=int, default=200, help="(a) Home requests per server per round")
    v.add_argument("--versus-rate", type=float, default=100.0, help="(b) open-loop rate of the CPU runs, req/s")
    v.add_argument("--versus-cpu-rounds", type=int, default=2, help="(b) interleaved CPU runs per server")
    v.add_argument("--versus-seconds", type=float, default=5.0, help="measured seconds of every versus open-loop run")
    v.add_argument("--versus-rates", help="(c) comma-separated rate ladder (default: 150 x 1.2^k, k < 16)")
    v.add_argument(
        "--versus-encore-checkout",
        type=Path,
        help="run Encore from this checkout (e.g. `git worktree add ../encore-before <commit>`): a before/after",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results"), help="directory for bench.json and logs")
    return show_defaults(p)


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
        cascade_size=args.cascade_size,
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


def _versus_plan(args: argparse.Namespace, plan: Plan) -> VersusPlan:
    rates = tuple(float(r) for r in args.versus_rates.split(",")) if args.versus_rates else VERSUS_RATES
    if not rates or min(rates) <= 0 or list(rates) != sorted(rates):
        raise SystemExit("bench: --versus-rates must be positive and increasing")
    if min(args.versus_rounds, args.versus_requests, args.versus_cpu_rounds) < 1 or args.versus_rate <= 0:
        raise SystemExit("bench: --versus-rounds, --versus-requests, --versus-cpu-rounds and --versus-rate must be > 0")
    quick = args.quick
    return VersusPlan(
        bundle=args.versus_bundle,
        rounds=1 if quick else args.versus_rounds,
        requests=20 if quick else args.versus_requests,
        warmup=5 if quick else 20,
        cpu_rate=args.versus_rate,
        cpu_rounds=1 if quick else args.versus_cpu_rounds,
        seconds=1.0 if quick else args.versus_seconds,
        warmup_s=0.5 if quick else 1.0,
        rates=rates[:2] if quick else rates,
        overload=(2.0, 5.0),
        deadline_ms=plan.deadline_ms,
        channels=32,  # per worker process: SO_REUSEPORT hashes connections to workers; few split unevenly
        retrieval_size=plan.retrieval_size,
        popularity_size=plan.popularity_size,
        encore_checkout=_checkout(args.versus_encore_checkout),
    )


def _checkout(path: Path | None) -> Path | None:
    if path is not None and not (path / "cli" / "serve.py").is_file():
        raise SystemExit(f"bench: --versus-encore-checkout: {path} is not an Encore checkout (no cli/serve.py)")
    return None if path is None else path.resolve()


def main(argv: Sequence[str] | None = None) -> int:
    """``encore bench`` / ``python -m loadtests.bench``: run the benchmark; 0 when it ran (timings are
    reported, never asserted)."""
    args = parser().parse_args(argv)
    plan = _plan(args)
    versus = None if args.no_versus else _versus_plan(args, plan)
    default = "synthetic-20k" if args.quick else "synthetic-1m,hetrec-bench"
    names = [n.strip() for n in (args.bundles or default).split(",") if n.strip()]
    if args.versus_only and (versus is None or versus.bundle not in names):
        raise SystemExit(f"bench: --versus-only needs --versus-bundle ({args.versus_bundle}) in --bundles")
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "bench.json"
    started = time.monotonic()
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": host_info(),
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
        path = ensure_bundle(name, args.bundles_dir, args.data_path, _log)
        if path is None:
            report["skipped"].append(name)
        else:
            bundles.append((name, path))
    texts: list[str] = []
    with redis_server() as redis:
        redis_url = redis.url
        _log(f"redis at {redis_url}")
        for name, path in bundles if not args.versus_only else []:
            result = bench_bundle(name, path, redis_url, plan, args.out)
            report["bundles"][name] = result
            texts.append(format_report(result, plan))
            write_json(json_path, report)
            _log(f"{name}: done; results so far in {json_path}")
        versus_path = dict(bundles).get(versus.bundle) if versus is not None else None
        if versus is not None and versus_path is not None:
            _log(f"versus on {versus.bundle}: Encore against the straight-line reference")
            report["versus"] = run_versus(versus.bundle, versus_path, redis, versus, args.out)
            texts.append(format_versus(report["versus"]))
            write_json(json_path, report)
    report["elapsed_s"] = time.monotonic() - started
    write_json(json_path, report)
    print_summary(report, texts, sys.stdout)
    _log(f"written {json_path} ({report['elapsed_s']:.0f} s)")
    return 0
