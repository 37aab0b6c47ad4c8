"""``encore build``: train models on a dataset and write an artifact bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.exit_codes import OK, UsageError
from cli.spark_options import add_spark_options

DEFAULT_BUNDLES = Path("bundles")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    b.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="where the heavy stages run: this process, or Spark (split, statistics, MLlib ALS, neighbours, "
        "ranker examples, evaluation); the same names as `experiments analyze --engine` and `features load --engine`",
    )
    add_spark_options(b)
    b.add_argument(
        "--input",
        help="with --engine spark: Parquet/CSV interactions (user_id, item_id, plays) at any path Spark reads",
    )
    b.add_argument(
        "--index-type",
        choices=["auto", "flat", "ivf", "hnsw", "ivfpq"],
        default="auto",
        help="FAISS index (auto: flat up to 200k items, IVF beyond; docs/ARCHITECTURE.md sizes each)",
    )
    b.add_argument(
        "--ranker-replicas",
        type=int,
        help="stage-A ranker replicas (default: 8, or 2 with --engine spark; 1 above 200k items)",
    )
    b.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.dataset == "hetrec" and args.data_path is None:
        raise UsageError("--data-path is required with --dataset hetrec")
    if args.input is not None and args.engine != "spark":
        raise UsageError("--input needs --engine spark")
    from common.spark import parse_spark_conf
    from models.build import BuildConfig, build_bundle

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
        engine="inprocess" if args.engine == "local" else args.engine,
        spark_master=args.spark_master,
        spark_conf=parse_spark_conf(args.spark_conf),
        input_path=args.input,
        index_type=args.index_type,
        ranker_replicas=args.ranker_replicas,
    )
    path = build_bundle(config, log=lambda line: print(line, flush=True))
    print(f"bundle written: {path}")
    return OK
