"""``--spark-conf spark.KEY=VALUE``: parsed into Spark settings, a malformed item named."""

from __future__ import annotations

import pytest

from cli.main import main
from common.spark import DEFAULT_CONF, SparkEngineError, parse_spark_conf


def test_items_become_settings_and_the_later_one_wins() -> None:
    conf = parse_spark_conf(["spark.driver.memory=8g", " spark.sql.shuffle.partitions = 64", "spark.driver.memory=4g"])
    assert conf == {"spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "64"}
    assert parse_spark_conf(None) == {} and parse_spark_conf([]) == {}
    assert parse_spark_conf(["spark.executor.extraJavaOptions=-Da=b"]) == {"spark.executor.extraJavaOptions": "-Da=b"}
    assert set(conf) <= set(DEFAULT_CONF)  # both override an Encore default


@pytest.mark.parametrize("item", ["spark.driver.memory", "driver.memory=8g", "=8g", ""])
def test_a_malformed_item_is_refused_by_name(item: str) -> None:
    with pytest.raises(SparkEngineError, match=f"--spark-conf '{item}': expected spark.KEY=VALUE"):
        parse_spark_conf(["spark.ui.enabled=false", item])


def test_the_build_refuses_a_malformed_item_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "--engine", "spark", "--spark-conf", "memory=8g"]) == 2
    assert "--spark-conf 'memory=8g'" in capsys.readouterr().err
