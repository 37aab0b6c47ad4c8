"""The ``encore`` command: build bundles, serve them, and rank against a running server.

encore build  [--dataset synthetic|hetrec] [--data-path DIR] [--n-items N] [--n-users N] [--out DIR]
encore serve  --bundle DIR [--port 50051] [--redis-url URL [--load-features]] [--metrics-port 9464]
encore rank   --user-id U [--surface home|now_playing] [--seed-item-id I] [--limit N] [--target HOST:PORT]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import grpc

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc

log = logging.getLogger("encore")

DEFAULT_BUNDLES = Path("bundles")


def _user_error(command: str, exc: Exception) -> int:
    """Bad input files or settings: one line on stderr naming the problem, exit code 2."""
    print(f"encore {command}: {exc}", file=sys.stderr)
    return 2


def _latest_bundle(parent: Path) -> Path:
    candidates = sorted(p for p in parent.glob("*") if (p / "manifest.json").is_file())
    if not candidates:
        raise SystemExit(f"encore: no bundle under {parent}/; run `encore build` first or pass --bundle")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def cmd_build(args: argparse.Namespace) -> int:
    from features.datasets import DatasetError
    from models.build import BuildConfig, build_bundle
    from models.bundle import BundleError
    from models.training import TrainingError

    if args.dataset == "hetrec" and args.data_path is None:
        raise SystemExit("encore build: --data-path is required with --dataset hetrec")
    config = BuildConfig(
        dataset=args.dataset,
        data_path=args.data_path,
        n_items=args.n_items,
        n_users=args.n_users,
        out_dir=args.out,
        version=args.version,
        seed=args.seed,
        factors=args.factors,
        ranker_users=args.ranker_users,
        eval_users=args.eval_users,
    )
    try:
        path = build_bundle(config, log=lambda line: print(line, flush=True))
    except (DatasetError, TrainingError, BundleError) as exc:
        return _user_error("build", exc)
    print(f"bundle written: {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers > 1:
        from serving.workers import prepare_multiprocess_metrics

        prepare_multiprocess_metrics()  # before prometheus_client is imported anywhere
    from models.bundle import BundleError
    from serving.config import load_settings
    from serving.errors import ConfigError
    from serving.experiments.config import ExperimentConfigError
    from serving.server import serve
    from serving.workers import serve_workers

    bundle = args.bundle or _latest_bundle(DEFAULT_BUNDLES)
    try:
        settings = load_settings(
            bundle,
            args.config,
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port,
            redis_url=args.redis_url,
            load_features=True if args.load_features else None,
            experiments=str(args.experiments) if args.experiments else None,
            exposure_log_dir=str(args.exposure_log_dir) if args.exposure_log_dir else None,
            max_in_flight=args.max_in_flight,
            capture_fraction=args.capture_fraction,
            tls_cert=str(args.tls_cert) if args.tls_cert else None,
            tls_key=str(args.tls_key) if args.tls_key else None,
            tls_client_ca=str(args.tls_client_ca) if args.tls_client_ca else None,
            admin_port=args.admin_port,
            admin_token_file=str(args.admin_token_file) if args.admin_token_file else None,
            capture_dir=str(args.capture_dir) if args.capture_dir else None,
        )
        if args.no_metrics:
            settings = replace(settings, metrics_port=None)
        if args.workers > 1:
            return serve_workers(settings, args.workers)
        asyncio.run(serve(settings))
    except (BundleError, ConfigError, ExperimentConfigError) as exc:
        return _user_error("serve", exc)
    return 0


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """Plaintext, or TLS when --tls-ca is given (plus a client certificate for mutual TLS)."""
    if args.tls_ca is None:
        return grpc.insecure_channel(args.target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=args.tls_ca.read_bytes(),
        private_key=args.tls_key.read_bytes() if args.tls_key else None,
        certificate_chain=args.tls_cert.read_bytes() if args.tls_cert else None,
    )
    return grpc.secure_channel(args.target, credentials)


def cmd_admin(args: argparse.Namespace) -> int:
    import os

    from encore.v1 import admin_pb2 as apb
    from encore.v1 import admin_pb2_grpc as apb_grpc

    token = (
        args.token_file.read_text(encoding="utf-8").strip()
        if args.token_file
        else os.environ.get("ENCORE_ADMIN_TOKEN", "")
    )
    metadata = (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(args.target) as channel:
        stub = apb_grpc.AdminServiceStub(channel)
        try:
            if args.action == "status":
                status = stub.Status(apb.StatusRequest(), metadata=metadata, timeout=args.timeout)
                print(status)
            else:
                both = not (args.bundle or args.experiments)
                reply = stub.Reload(
                    apb.ReloadRequest(bundle=args.bundle or both, experiments=args.experiments or both),
                    metadata=metadata,
                    timeout=args.timeout,
                )
                print(reply)
        except grpc.RpcError as exc:
            print(f"encore admin {args.action}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    return 0


def cmd_rank(args: argparse.Namespace) -> int:
    surface = {"home": pb.SURFACE_HOME, "now_playing": pb.SURFACE_NOW_PLAYING}[args.surface]
    request = pb.RankRequest(
        user_id=args.user_id, surface=surface, seed_item_id=args.seed_item_id or "", limit=args.limit, debug=True
    )
    with _channel(args) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        started = time.perf_counter()
        try:
            response = stub.Rank(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            print(f"encore rank: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        elapsed_ms = (time.perf_counter() - started) * 1000
    print(
        f"request {response.request_id}  bundle {response.bundle_version}  model {response.model_version or '-'}"
        f"  {elapsed_ms:.1f} ms"
    )
    if response.assignments:
        print("experiments: " + ", ".join(f"{a.experiment}={a.variant}" for a in response.assignments))
    if response.degraded:
        print("DEGRADED: " + ", ".join(response.degraded))
    print(f"{'pos':>3}  {'item_id':<24} {'score':>9}  source")
    for item in response.items:
        print(f"{item.position:>3}  {item.item_id:<24} {item.score:>9.4f}  {item.source}")
    if response.timings:
        print("stages: " + "  ".join(f"{t.stage}={t.milliseconds:.2f}ms" for t in response.timings))
    return 0


def cmd_experiments_validate(args: argparse.Namespace) -> int:
    from models.bundle import BundleError, read_manifest
    from serving.experiments.config import validate_file

    known: set[str] | None = None
    if args.bundle is not None:
        try:
            known = {m["version"] for m in read_manifest(args.bundle)["models"]}
        except BundleError as exc:
            return _user_error("experiments validate", exc)
    elif args.models:
        known = set(args.models.split(","))
    problems = validate_file(args.file, known)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"{args.file}: valid" + ("" if known is not None else " (model versions not checked: pass --bundle)"))
    return 0


def cmd_experiments_analyze(args: argparse.Namespace) -> int:
    import json

    from offline.experiments.analysis import analyze
    from offline.experiments.outcome_logs import load_exposures, load_outcomes
    from offline.experiments.report import format_report, report_to_json
    from serving.experiments.config import ExperimentError, load_experiments

    try:
        weights = None
        if args.experiments is not None:
            config = load_experiments(args.experiments)
            weights = {e.key: dict(e.weights_by_variant) for e in config.all_experiments}
            if config.holdout is not None:
                c = config.holdout.coverage
                weights[config.holdout.key] = {"holdout": c, "general": 1.0 - c}
        report = analyze(
            load_exposures(args.exposures, strict=not args.lenient),
            load_outcomes(args.outcomes, strict=not args.lenient),
            expected_weights=weights,
            correction=args.correction,
            alpha=args.alpha,
        )
    except (ExperimentError, OSError) as exc:
        return _user_error("experiments analyze", exc)
    print(json.dumps(report_to_json(report), indent=2, allow_nan=False) if args.json else format_report(report))
    return 3 if report.srm_flagged else 0


def cmd_experiments_simulate(args: argparse.Namespace) -> int:
    from offline.experiments.simulation import SimulationConfig, simulate_and_analyze

    config = SimulationConfig(out_dir=args.out, n_users=args.users, sessions_per_user=args.sessions, seed=args.seed)
    outcome = asyncio.run(simulate_and_analyze(config, progress=lambda line: print(line, flush=True)))
    print(outcome.report_text)
    print(outcome.verdict)
    return 0 if outcome.detected else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="encore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="train models on a dataset and write an artifact bundle")
    b.add_argument("--dataset", choices=["synthetic", "hetrec"], default="synthetic")
    b.add_argument("--data-path", type=Path, help="dataset directory (hetrec: holds user_artists.dat)")
    b.add_argument("--n-items", type=int, default=20_000, help="synthetic catalog size")
    b.add_argument("--n-users", type=int, default=5_000, help="synthetic user count")
    b.add_argument("--out", type=Path, default=DEFAULT_BUNDLES, help="parent directory for bundles")
    b.add_argument("--version", help="bundle version (default: dataset name + UTC timestamp)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--factors", type=int, default=64, help="embedding dimension")
    b.add_argument("--ranker-users", type=int, default=3000, help="users sampled to train the ranker")
    b.add_argument("--eval-users", type=int, default=2000, help="held-out users sampled for offline evaluation")
    b.set_defaults(func=cmd_build)

    s = sub.add_parser("serve", help="serve a bundle over gRPC")
    s.add_argument("--bundle", type=Path, help="bundle directory (default: newest under ./bundles)")
    s.add_argument("--config", type=Path, help="settings YAML (see serving/config.py)")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--metrics-port", type=int)
    s.add_argument("--no-metrics", action="store_true", help="do not expose Prometheus metrics")
    s.add_argument(
        "--redis-url",
        help="redis://[:password@]host:port/db, or redis+cluster://[:password@]host:port[,host:port...] "
        "(default: embedded store)",
    )
    s.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (needs --redis-url)")
    s.add_argument("--max-in-flight", type=int, help="per-worker RPCs in flight before RESOURCE_EXHAUSTED")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve over TLS")
    s.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    s.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates (mutual TLS)")
    s.add_argument("--admin-port", type=int, help="admin listener port (loopback; needs a token)")
    s.add_argument("--admin-token-file", type=Path, help="admin bearer token file (or ENCORE_ADMIN_TOKEN)")
    s.add_argument("--capture-fraction", type=float, help="share of users whose Rank exchanges are captured")
    s.add_argument("--capture-dir", type=Path, help="directory for capture files (default ./captures)")
    s.add_argument("--load-features", action="store_true", help="write the bundle's user snapshot into Redis")
    s.add_argument("--experiments", type=Path, help="experiments YAML (hot-reloaded on change and on SIGHUP)")
    s.add_argument("--exposure-log-dir", type=Path, help="directory for exposure JSONL files (default ./exposures)")
    s.set_defaults(func=cmd_serve)

    e = sub.add_parser("experiments", help="validate, analyse and simulate experiments")
    esub = e.add_subparsers(dest="experiments_command", required=True)
    ev = esub.add_parser("validate", help="report every problem in an experiments file, with its location")
    ev.add_argument("file", type=Path)
    ev.add_argument("--bundle", type=Path, help="check model versions against this bundle's models")
    ev.add_argument("--models", help="comma-separated known model versions (instead of --bundle)")
    ev.set_defaults(func=cmd_experiments_validate)
    ea = esub.add_parser("analyze", help="join exposures with outcomes: lifts, CIs, p-values, SRM (exit 3 on SRM)")
    ea.add_argument("--exposures", nargs="+", required=True, help="exposure JSONL files or directories")
    ea.add_argument("--outcomes", nargs="+", required=True, help="outcome JSONL files or directories")
    ea.add_argument("--experiments", type=Path, help="experiments YAML: expected weights for the SRM check")
    ea.add_argument("--correction", choices=["holm", "bh"], default="holm", help="multiple-testing correction")
    ea.add_argument("--alpha", type=float, default=0.05)
    ea.add_argument("--lenient", action="store_true", help="skip malformed lines (counted) instead of failing")
    ea.add_argument("--json", action="store_true", help="machine-readable output")
    ea.set_defaults(func=cmd_experiments_analyze)
    es = esub.add_parser("simulate", help="run a synthetic experiment through a real server and analyse it")
    es.add_argument("--out", type=Path, default=Path("simulation"), help="where bundle, logs and outcomes go")
    es.add_argument("--users", type=int, default=1000)
    es.add_argument("--sessions", type=int, default=2, help="Home sessions per simulated user")
    es.add_argument("--seed", type=int, default=0)
    es.set_defaults(func=cmd_experiments_simulate)

    bn = sub.add_parser(
        "bench",
        help="benchmark: component floor, server stages, open-loop rate steps, memory (see --help)",
        add_help=False,
    )
    bn.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments for loadtests.bench")
    rp = sub.add_parser(
        "replay",
        help="replay captured traffic against primary/candidate/secondary and diff (see --help)",
        add_help=False,
    )
    rp.add_argument("replay_args", nargs=argparse.REMAINDER, help="arguments for loadtests.replay")

    a = sub.add_parser("admin", help="status or reload through the admin listener")
    a.add_argument("action", choices=["status", "reload"])
    a.add_argument("--target", default="127.0.0.1:50052")
    a.add_argument("--token-file", type=Path, help="admin token file (default: ENCORE_ADMIN_TOKEN)")
    a.add_argument("--bundle", action="store_true", help="reload: only the bundle")
    a.add_argument("--experiments", action="store_true", help="reload: only the experiments file")
    a.add_argument("--timeout", type=float, default=120.0)
    a.set_defaults(func=cmd_admin)

    r = sub.add_parser("rank", help="rank for a user against a running server and print a table")
    r.add_argument("--user-id", required=True)
    r.add_argument("--surface", choices=["home", "now_playing"], default="home")
    r.add_argument("--seed-item-id")
    r.add_argument("--limit", type=int, default=0)
    r.add_argument("--target", default="127.0.0.1:50051")
    r.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds")
    r.add_argument("--tls-ca", type=Path, help="PEM CA to verify the server (enables TLS)")
    r.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    r.add_argument("--tls-key", type=Path, help="client private key (mutual TLS)")
    r.set_defaults(func=cmd_rank)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # the benchmark owns its arguments (and --help)
        from loadtests.bench.runner import main as bench_main

        return bench_main(argv[1:])
    if argv[:1] == ["replay"]:  # so does the shadow replay
        from loadtests.replay.run import main as replay_main

        return replay_main(argv[1:])
    args = parser().parse_args(argv)
    from serving.request_context import configure_logging

    configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
