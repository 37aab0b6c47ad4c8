"""The SparkSession the build uses: one per process, settings chosen for a build (not a notebook)."""

from __future__ import annotations

import logging
from typing import Any

from common.errors import EncoreError


class SparkEngineError(EncoreError):
    """The Spark engine cannot run (pyspark missing, the master unreachable); names the flag."""


def spark_session(master: str = "local[2]", *, app_name: str = "encore-build", shuffle_partitions: int = 8) -> Any:
    """Get or create the SparkSession on ``master`` (``--spark-master``: ``local[N]``, ``spark://``,
    ``k8s://``). The UI is off and the shuffle partition count small, as suits one build job;
    a cluster submit overrides both with ``spark.*`` settings. Raises ``SparkEngineError``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # the optional extra is not installed
        raise SparkEngineError("--engine spark needs pyspark: pip install 'encore[spark]'") from exc
    try:
        session = (
            SparkSession.builder.master(master)
            .appName(app_name)
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
            .config("spark.driver.memory", "2g")
            .config("spark.ui.showConsoleProgress", "false")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
        logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines at exit hit closed streams
        return session
    except Exception as exc:
        raise SparkEngineError(f"--spark-master {master!r}: cannot start a SparkSession ({exc})") from exc


__all__ = ["SparkEngineError", "spark_session"]
