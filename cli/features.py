"""``encore features load|gc``: versioned loads of a bundle's user features into Redis.

``load`` writes the bundle's user snapshot under its version (``features.redis_load``), in this
process (``--engine local``) or on Spark (``--engine spark``, one Redis connection per partition),
then marks the version complete; servers on that bundle switch to it (``features.redis_store``).
``gc`` deletes every complete load but the ``--keep`` newest and the active one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cli.exit_codes import OK
from cli.spark_options import add_spark_options, session_for


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    f = sub.add_parser("features", help="load a bundle's user features into Redis (versioned), delete old loads")
    fsub = f.add_subparsers(dest="features_command", required=True)
    load = fsub.add_parser("load", help="write the bundle's user snapshot as load <bundle version>, then mark it")
    load.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    load.add_argument("--redis-url", required=True, help="redis://host:port/db or redis+cluster://host:port,...")
    load.add_argument("--engine", choices=("local", "spark"), default="local", help="where the writes run")
    add_spark_options(load)
    load.add_argument("--partitions", type=int, default=None, help="Spark partitions (default: parallelism)")
    load.add_argument("--batch", type=int, default=1000, help="rows per pipelined batch")
    load.add_argument("--json", action="store_true", help="print the result as JSON")
    load.set_defaults(func=run_load)
    gc = fsub.add_parser("gc", help="delete complete loads but the --keep newest and the active one")
    gc.add_argument("--redis-url", required=True, help="as for load")
    gc.add_argument("--keep", type=int, default=2, help="complete loads to keep (the active one always is)")
    gc.set_defaults(func=run_gc)


def run_load(args: argparse.Namespace) -> int:
    from features.redis_load import load_local, load_spark
    from models.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    snapshot = bundle.load_users()
    if args.engine == "spark":
        spark = session_for(args, "encore-features-load")
        try:
            result = load_spark(
                snapshot, args.redis_url, bundle.version, spark=spark, batch=args.batch, partitions=args.partitions
            )
        finally:
            spark.stop()
    else:
        result = load_local(snapshot, args.redis_url, bundle.version, batch=args.batch)
    rate = result.rows / max(result.seconds, 1e-9)
    summary = {
        "version": result.version,
        "rows": result.rows,
        "bytes": result.bytes,
        "seconds": round(result.seconds, 3),
        "users_per_s": round(rate),
        "mb_per_s": round(result.bytes / max(result.seconds, 1e-9) / 1e6, 2),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"load {result.version} complete: {result.rows} users, {result.bytes / 1e6:.1f} MB in "
            f"{result.seconds:.1f} s ({summary['users_per_s']} users/s, {summary['mb_per_s']} MB/s)"
        )
    return OK


def run_gc(args: argparse.Namespace) -> int:
    from features.redis_load import gc

    deleted = gc(args.redis_url, args.keep)
    print(f"deleted {len(deleted)} load(s): {', '.join(deleted) or 'none'}")
    return OK
