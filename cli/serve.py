"""``encore serve``: serve a bundle over gRPC.

Imports stay inside ``run``: with ``--workers`` prometheus_client must not be imported before
``prepare_multiprocess_metrics()``, and ``encore serve`` imports only what the server needs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cli.build import DEFAULT_BUNDLES
from cli.exit_codes import OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser("serve", help="serve a bundle over gRPC")
    s.add_argument("--bundle", type=Path, help="bundle directory (default: ENCORE_BUNDLE, else newest under ./bundles)")
    s.add_argument(
        "--config", type=Path, help="settings YAML (see serving/config.py); ENCORE_<KEY> variables override it"
    )
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.add_argument("--metrics-port", type=int)
    s.add_argument("--no-metrics", action="store_true", help="do not expose Prometheus metrics")
    s.add_argument(
        "--log-format", choices=("text", "json"), help="log lines as text or one JSON object per line (default text)"
    )
    s.add_argument(
        "--redis-url",
        help="redis://[:password@]host:port/db, or redis+cluster://[:password@]host:port[,host:port...] "
        "(default: embedded store)",
    )
    s.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (needs --redis-url)")
    s.add_argument("--max-in-flight", type=int, help="per-worker handlers running at once; more get RESOURCE_EXHAUSTED")
    s.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve over TLS")
    s.add_argument("--tls-key", type=Path, help="PEM private key for --tls-cert")
    s.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates (mutual TLS)")
    s.add_argument("--admin-port", type=int, help="admin listener port (loopback; needs a token)")
    s.add_argument("--admin-token-file", type=Path, help="admin bearer token file (or ENCORE_ADMIN_TOKEN)")
    s.add_argument("--capture-fraction", type=float, help="share of users whose Rank exchanges are captured")
    s.add_argument("--capture-dir", type=Path, help="directory for capture files (default ./captures)")
    s.add_argument("--load-features", action="store_true", help="write the bundle's user snapshot into Redis")
    s.add_argument("--experiments", type=Path, help="experiments YAML (hot-reloaded on change and on SIGHUP)")
    s.add_argument(
        "--experiments-store",
        help="follow the experiments store's revisions (file:///dir or redis://…) instead of a file",
    )
    s.add_argument("--exposure-log-dir", type=Path, help="directory for exposure JSONL files (default ./exposures)")
    s.add_argument(
        "--outcome-log-dir", type=Path, help="directory for outcome JSONL files from RecordEvents (default ./outcomes)"
    )
    s.set_defaults(func=run)


def latest_bundle(parent: Path) -> Path:
    """The newest bundle directory under ``parent``; ``BundleError`` when there is none."""
    from models.bundle import BundleError

    candidates = sorted(p for p in parent.glob("*") if (p / "manifest.json").is_file())
    if not candidates:
        raise BundleError(f"no bundle under {parent}/; run `encore build` first or pass --bundle")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def run(args: argparse.Namespace) -> int:
    if args.workers > 1:
        from serving.workers import prepare_multiprocess_metrics

        prepare_multiprocess_metrics()  # before prometheus_client is imported anywhere
    import asyncio
    from dataclasses import replace

    from serving.config import bundle_from_env, load_settings
    from serving.request_context import configure_logging
    from serving.server import serve
    from serving.workers import serve_workers

    bundle = args.bundle or bundle_from_env() or latest_bundle(DEFAULT_BUNDLES)
    settings = load_settings(
        bundle,
        args.config,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        redis_url=args.redis_url,
        load_features=True if args.load_features else None,
        experiments=str(args.experiments) if args.experiments else None,
        experiments_store=args.experiments_store,
        exposure_log_dir=str(args.exposure_log_dir) if args.exposure_log_dir else None,
        outcome_log_dir=str(args.outcome_log_dir) if args.outcome_log_dir else None,
        max_in_flight=args.max_in_flight,
        capture_fraction=args.capture_fraction,
        tls_cert=str(args.tls_cert) if args.tls_cert else None,
        tls_key=str(args.tls_key) if args.tls_key else None,
        tls_client_ca=str(args.tls_client_ca) if args.tls_client_ca else None,
        admin_port=args.admin_port,
        admin_token_file=str(args.admin_token_file) if args.admin_token_file else None,
        capture_dir=str(args.capture_dir) if args.capture_dir else None,
        log_format=args.log_format,
    )
    configure_logging(logging.getLogger().level, settings.log_format)
    if args.no_metrics:
        settings = replace(settings, metrics_port=None)
    if args.workers > 1:
        return serve_workers(settings, args.workers)
    asyncio.run(serve(settings))
    return OK
