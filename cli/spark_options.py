"""``--spark-master`` and ``--spark-conf``: the Spark options every ``--engine spark`` command takes."""

from __future__ import annotations

import argparse
from typing import Any

from common.spark import parse_spark_conf, spark_session


def add_spark_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--spark-master`` and the repeatable ``--spark-conf spark.KEY=VALUE`` to ``parser``."""
    parser.add_argument(
        "--spark-master", default="local[2]", help="with --engine spark: local[N], spark://..., k8s://..., yarn"
    )
    parser.add_argument(
        "--spark-conf",
        action="append",
        metavar="spark.KEY=VALUE",
        help="with --engine spark: a Spark setting, repeatable (e.g. spark.driver.memory=8g, "
        "spark.executor.instances=50); overrides Encore's defaults (common.spark.DEFAULT_CONF)",
    )


def session_for(args: argparse.Namespace, app_name: str) -> Any:
    """The SparkSession the parsed options ask for. Raises ``SparkEngineError`` naming the flag."""
    return spark_session(args.spark_master, app_name=app_name, conf=parse_spark_conf(args.spark_conf))


__all__ = ["add_spark_options", "session_for"]
