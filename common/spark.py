"""The one way Encore starts Spark: ``spark_session`` for every offline job (build, Redis load,
experiment analysis) and ``SparkEngineError`` when it cannot.

pyspark is the optional extra ``spark`` and is imported only inside ``spark_session``, so nothing
that imports this module needs it. The server never does (an import-linter contract).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from common.errors import EncoreError

__all__ = ["DEFAULT_CONF", "SparkEngineError", "parse_spark_conf", "spark_session"]

#: Settings for a batch job on one machine; ``conf`` (``--spark-conf``) overrides any of them.
#: A cluster raises ``spark.sql.shuffle.partitions`` and sets executor memory and cores.
DEFAULT_CONF: Mapping[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "8",
    "spark.driver.memory": "2g",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
}


class SparkEngineError(EncoreError):
    """The Spark engine cannot run (pyspark missing, the master unreachable, a bad ``--spark-conf``);
    names the flag."""


def parse_spark_conf(items: list[str] | None) -> dict[str, str]:
    """``--spark-conf KEY=VALUE`` options as a dict (later ones win). Raises ``SparkEngineError``
    naming the malformed item."""
    conf: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().startswith("spark."):
            raise SparkEngineError(f"--spark-conf {item!r}: expected spark.KEY=VALUE, e.g. spark.driver.memory=8g")
        conf[key.strip()] = value.strip()
    return conf


def spark_session(master: str = "local[2]", *, app_name: str, conf: Mapping[str, str] | None = None) -> Any:
    """Get or create the SparkSession on ``master`` (``--spark-master``: ``local[N]``, ``spark://``,
    ``k8s://``) with ``DEFAULT_CONF`` updated by ``conf``. Python workers run this interpreter
    unless ``PYSPARK_PYTHON`` says otherwise. Raises ``SparkEngineError``."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # the optional extra is not installed
        raise SparkEngineError("--engine spark needs pyspark: pip install 'encore[spark]'") from exc
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in {**DEFAULT_CONF, **(conf or {})}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:
        raise SparkEngineError(f"--spark-master {master!r}: cannot start a SparkSession ({exc})") from exc
    session.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines at exit hit closed streams
    return session
