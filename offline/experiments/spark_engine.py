"""The Spark engine of ``encore experiments analyze``: the same analysis, computed where the logs are.

``analyze_spark(spark, exposure_paths, outcome_paths, ...)`` returns the ``AnalysisReport`` that
``offline.experiments.analysis.analyze`` returns for the same logs and options. Spark reads the logs
(the files ``outcome_logs.expand_paths`` finds: JSONL, gzipped JSONL named ``*.gz``, Parquet by its
magic bytes, so ``compact --partition-by-date`` trees too), dedupes exposures (earliest ``ts_ms``
per (unit, experiment); units seen with two variants dropped), joins each kept unit's outcomes
(after its first exposure; the CUPED window before it), sums them per unit, and reduces the units
to per-variant sufficient statistics (``analysis.ExperimentSums``): counts, sums, sums of squares
and the ``MetricMoments`` of every decision metric, also per UTC day for the timeline. Only those
(a few rows per experiment, variant and day) and, for the histograms, the per-(variant, value)
unit counts reach the driver, which then runs the shared ``analysis.build_report``.

**Timeline.** A unit's value up to day ``D`` is cumulative, so its square is not additive over
days. Per unit, the running values are computed with a window over its days with outcomes; each
such day contributes ``f(v_D) - f(v_prev)`` (``f`` = the moment vector: components and pairwise
products), its exposure day ``f(v)`` and one unit; per (variant, day) these deltas are summed and
the driver takes cumulative sums over days. The telescoping sum equals the direct one exactly when
the values are integers (outcome counts, the log's default ``value`` of 1), as every float sum
here is then exact; with fractional values the engines agree to rounding (~1e-15 relative).

Contract differences from the local engine: malformed records always raise (no ``--lenient``);
``ReadStats.skipped`` is 0; a gzipped file must be named ``*.gz``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

import numpy as np
from numpy.typing import NDArray

from offline.experiments.analysis import (
    DAY_MS,
    AnalysisOptions,
    AnalysisReport,
    ExperimentSums,
    _all_names,
    build_report,
)
from offline.experiments.columnar import Kind
from offline.experiments.inference import MetricMoments
from offline.experiments.metric_specs import MetricSpec
from offline.experiments.outcome_logs import AnalysisInputError, PathArg, ReadStats, expand_paths

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, Row, SparkSession

__all__ = ["analyze_spark"]

_PARQUET_MAGIC: Final[bytes] = b"PAR1"
_PAIRS: Final[tuple[tuple[int, int], ...]] = tuple((k, j) for k in range(4) for j in range(k, 4))


def _is_parquet(path: Path) -> bool:
    with path.open("rb") as probe:
        return probe.read(4) == _PARQUET_MAGIC


def _read(spark: SparkSession, files: Sequence[Path], kind: Kind) -> DataFrame:
    """The kind's four columns of ``files`` (``value`` null → 1.0); raises on a bad record."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

    key = "experiment" if kind == "exposures" else "metric"
    last = "variant" if kind == "exposures" else "value"
    last_type = StringType() if kind == "exposures" else DoubleType()
    schema = StructType(
        [
            StructField("ts_ms", LongType()),
            StructField("unit_id", StringType()),
            StructField(key, StringType()),
            StructField(last, last_type),
        ]
    )
    names = [f.name for f in schema.fields]
    parquet = [str(f) for f in files if _is_parquet(f)]
    jsonl = [str(f) for f in files if not _is_parquet(f)]
    frames: list[DataFrame] = []
    if jsonl:
        frames.append(spark.read.schema(schema).option("mode", "FAILFAST").json(jsonl).select(*names))
    if parquet:
        raw = spark.read.parquet(*parquet)
        frames.append(
            raw.select(
                *[
                    (F.col(f.name) if f.name in raw.columns else F.lit(None)).cast(f.dataType).alias(f.name)
                    for f in schema.fields
                ]
            )
        )
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other)
    if kind == "outcomes":
        df = df.withColumn("value", F.coalesce(F.col("value"), F.lit(1.0)))
    return df


def _check(df: DataFrame, kind: Kind, files: Sequence[Path]) -> int:
    """Row count; raises ``AnalysisInputError`` when a required field is null/empty or ts_ms < 0."""
    from pyspark.sql import functions as F

    strings = [c for c in df.columns if c not in ("ts_ms", "value")]
    bad = F.col("ts_ms").isNull() | (F.col("ts_ms") < 0)
    for c in strings:
        bad = bad | F.col(c).isNull() | (F.col(c) == "")
    if kind == "outcomes":
        bad = bad | F.isnan("value") | (F.abs("value") == float("inf"))
    row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(F.when(bad, 1).otherwise(0)).alias("bad")).first()
    assert row is not None
    if row["bad"]:
        raise AnalysisInputError(
            f"{row['bad']} invalid {kind} records (the Spark engine is strict)", path=str(files[0])
        )
    return int(row["n"])


def analyze_spark(
    spark: SparkSession,
    exposure_paths: Iterable[PathArg],
    outcome_paths: Iterable[PathArg],
    options: AnalysisOptions | None = None,
) -> AnalysisReport:
    """``analysis.analyze`` of the logs at these paths with ``options`` (default
    ``AnalysisOptions()``), computed by Spark (module docstring)."""
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    options = options or AnalysisOptions()
    decision_metrics, timeline = options.decision_metrics, options.timeline
    spark.conf.set("spark.sql.session.timeZone", "UTC")  # days are UTC days, whatever the session's default
    ex_files, out_files = expand_paths(exposure_paths), expand_paths(outcome_paths)
    ex = _read(spark, ex_files, "exposures").persist(StorageLevel.MEMORY_AND_DISK)
    oc = _read(spark, out_files, "outcomes").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        n_ex, n_oc = _check(ex, "exposures", ex_files), _check(oc, "outcomes", out_files)
    except AnalysisInputError:
        raise
    except Exception as exc:  # Spark's reader failed (FAILFAST: a malformed line or file)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AnalysisInputError(f"Spark could not read the logs: {first_line[:300]}") from exc
    metric_names = options.metric_names(r["metric"] for r in oc.select("metric").distinct().collect())
    names = _all_names(metric_names, decision_metrics)
    window_ms = round(options.cuped_window_days * DAY_MS)
    cuped = window_ms > 0

    # Each frame used by more than one job below is computed once and kept (memory, then disk).
    keep = StorageLevel.MEMORY_AND_DISK
    groups = (
        ex.groupBy("experiment", "unit_id")
        .agg(
            F.min("ts_ms").alias("first_ts"),
            F.count(F.lit(1)).alias("rows"),
            F.min("variant").alias("variant"),
            F.max("variant").alias("vmax"),
        )
        .persist(keep)
    )
    per_exp = {
        r["experiment"]: r
        for r in groups.groupBy("experiment")
        .agg(
            F.sum("rows").alias("rows"),
            F.count(F.lit(1)).alias("groups"),
            F.sum(F.when(F.col("variant") != F.col("vmax"), 1).otherwise(0)).alias("mixed"),
        )
        .collect()
    }
    kept = groups.filter(F.col("variant") == F.col("vmax")).select("experiment", "unit_id", "variant", "first_ts")
    exposed = ex.select("unit_id").distinct()
    matched = oc.join(exposed, "unit_id", "left_semi").persist(keep)
    unmatched = n_oc - matched.count()
    relevant = matched.filter(F.col("metric").isin(list(names)))
    ex_max = ex.agg(F.max("ts_ms")).first()
    oc_max = relevant.agg(F.max("ts_ms")).first()
    last_event = max(int((ex_max or [0])[0] or 0), int((oc_max or [0])[0] or 0))

    joined = (
        kept.join(relevant, "unit_id", "left").withColumn("offset", F.col("ts_ms") - F.col("first_ts")).persist(keep)
    )
    post_cols, pre_cols = [f"post{i}" for i in range(len(names))], [f"pre{i}" for i in range(len(names))]

    def metric_sum(i: int, cond: Column) -> Column:
        return F.sum(F.when((F.col("metric") == names[i]) & cond, F.col("value")).otherwise(0.0))

    post_cond = F.col("offset") >= 0
    pre_cond = (F.col("offset") >= -window_ms) & (F.col("offset") < 0)
    units = (
        joined.groupBy("experiment", "unit_id", "variant", "first_ts")
        .agg(
            *[metric_sum(i, post_cond).alias(c) for i, c in enumerate(post_cols)],
            *[metric_sum(i, pre_cond).alias(c) for i, c in enumerate(pre_cols)],
            F.sum(F.when(F.col("offset") < 0, 1).otherwise(0)).alias("before"),
        )
        .persist(StorageLevel.MEMORY_AND_DISK)
    )

    def vector(spec: MetricSpec, post: Sequence[str], pre: Sequence[str]) -> list[Column]:
        """``(y, d, x, xd)`` of one decision metric from per-unit metric columns."""

        def total(cols: Sequence[str], wanted: Sequence[str]) -> Column:
            parts = [F.col(cols[names.index(m)]) for m in wanted]
            out = parts[0]
            for p in parts[1:]:
                out = out + p
            return out

        one = F.lit(1.0)
        y = total(post, [spec.numerator])
        d = total(post, spec.denominator) if spec.denominator else one
        x = total(pre, [spec.numerator]) if cuped else one
        xd = total(pre, spec.denominator) if cuped and spec.denominator else one
        return [y, d, x, xd]

    # Per (experiment, variant): counts, sums, squares, positives; moments of every decision metric.
    aggs: list[Column] = [F.count(F.lit(1)).alias("n"), F.min("first_ts").alias("first"), F.sum("before").alias("b")]
    for m in range(len(metric_names)):
        c = F.col(post_cols[m])
        aggs += [
            F.sum(c).alias(f"s{m}"),
            F.sum(c * c).alias(f"q{m}"),
            F.sum(F.when(c > 0, 1.0).otherwise(0.0)).alias(f"p{m}"),
        ]
    for k, spec in enumerate(decision_metrics):
        v = vector(spec, post_cols, pre_cols)
        aggs += [F.sum(v[i]).alias(f"m{k}_{i}") for i in range(4)]
        aggs += [F.sum(v[i] * v[j]).alias(f"m{k}_{i}{j}") for i, j in _PAIRS]
    variant_rows = units.groupBy("experiment", "variant").agg(*aggs).collect()

    # Histogram input: unit counts per (metric, variant, value).
    hist_rows = []
    if decision_metrics:
        parts = []
        for k, spec in enumerate(decision_metrics):
            y, d, _, _ = vector(spec, post_cols, pre_cols)
            frame = units.select(
                "experiment", "variant", (y / d if spec.denominator else y).alias("value"), d.alias("d")
            )
            if spec.denominator:
                frame = frame.filter(F.col("d") > 0)
            parts.append(frame.groupBy("experiment", "variant", "value").count().withColumn("k", F.lit(k)))
        hist = parts[0]
        for p in parts[1:]:
            hist = hist.unionByName(p)
        hist_rows = hist.collect()

    # Timeline: per-unit running values per day with outcomes, as deltas of the moment vector.
    day_rows = []
    if timeline and decision_metrics:
        day = F.expr(f"ts_ms div {DAY_MS}")
        daily = (
            joined.filter(F.col("offset") >= 0)
            .groupBy("experiment", "unit_id", day.alias("day"))
            .agg(*[metric_sum(i, F.lit(True)).alias(c) for i, c in enumerate(post_cols)])
        )
        entry = units.select(
            "experiment",
            "unit_id",
            F.expr(f"first_ts div {DAY_MS}").alias("day"),
            *[F.lit(0.0).alias(c) for c in post_cols],
        )
        steps = (
            daily.unionByName(entry)
            .groupBy("experiment", "unit_id", "day")
            .agg(*[F.sum(c).alias(c) for c in post_cols])
            .join(units.select("experiment", "unit_id", "variant", *pre_cols), ["experiment", "unit_id"])
        )
        w = Window.partitionBy("experiment", "unit_id").orderBy("day")
        cum_cols, prev_cols = [f"cum{i}" for i in range(len(names))], [f"prev{i}" for i in range(len(names))]
        running = w.rowsBetween(Window.unboundedPreceding, Window.currentRow)
        for name, cum, prev in zip(post_cols, cum_cols, prev_cols, strict=True):
            steps = steps.withColumn(cum, F.sum(name).over(running))
            steps = steps.withColumn(prev, F.lag(cum, 1).over(w))
        is_entry = F.col(prev_cols[0]).isNull()
        prev_filled = [f"pf{i}" for i in range(len(names))]
        for prev, pf in zip(prev_cols, prev_filled, strict=True):
            steps = steps.withColumn(pf, F.coalesce(F.col(prev), F.lit(0.0)))
        daggs: list[Column] = [F.sum(F.when(is_entry, 1).otherwise(0)).alias("n")]
        for k, spec in enumerate(decision_metrics):
            cur = vector(spec, cum_cols, pre_cols)
            old = vector(spec, prev_filled, pre_cols)

            def delta(a: Column, b: Column) -> Column:
                return F.sum(a - F.when(is_entry, 0.0).otherwise(b))

            daggs += [delta(cur[i], old[i]).alias(f"m{k}_{i}") for i in range(4)]
            daggs += [delta(cur[i] * cur[j], old[i] * old[j]).alias(f"m{k}_{i}{j}") for i, j in _PAIRS]
        day_rows = steps.groupBy("experiment", "variant", "day").agg(*daggs).collect()
    for frame in (units, joined, matched, groups, ex, oc):
        frame.unpersist()

    collected = _assemble(
        per_exp, variant_rows, hist_rows, day_rows, metric_names, decision_metrics, cuped, timeline, last_event
    )
    return build_report(
        collected,
        options,
        metric_names=metric_names,
        last_event=last_event,
        exposures_read=ReadStats(len(ex_files), n_ex, 0, ()),
        outcomes_read=ReadStats(len(out_files), n_oc, 0, ()),
        unmatched_outcomes=unmatched,
    )


def _to_moments(
    n: NDArray[np.float64], s: NDArray[np.float64], p: NDArray[np.float64], spec: MetricSpec, cuped: bool
) -> MetricMoments:
    products = np.empty((n.shape[0], 4, 4))
    for idx, (i, j) in enumerate(_PAIRS):
        products[:, i, j] = products[:, j, i] = p[:, idx]
    return MetricMoments(n.astype(np.float64), s.astype(np.float64), products, spec.is_ratio, cuped)


def _grid(rows: Sequence[Row], prefix: str, n_metrics: int) -> NDArray[np.float64]:
    """``(variants, metrics)`` array of the collected columns ``{prefix}{m}``."""
    values = [[float(r[f"{prefix}{m}"]) for m in range(n_metrics)] for r in rows]
    return np.array(values, dtype=np.float64).reshape(len(rows), n_metrics)


def _assemble(
    per_exp: Mapping[str, Row],
    variant_rows: Sequence[Row],
    hist_rows: Sequence[Row],
    day_rows: Sequence[Row],
    metric_names: Sequence[str],
    specs: Sequence[MetricSpec],
    cuped: bool,
    timeline: bool,
    last_event: int,
) -> list[ExperimentSums]:
    """``ExperimentSums`` per experiment from the collected Spark rows (variants sorted by name)."""
    out = []
    n_metrics = len(metric_names)
    for key, info in per_exp.items():
        rows = sorted((r for r in variant_rows if r["experiment"] == key), key=lambda r: r["variant"])
        variants = tuple(str(r["variant"]) for r in rows)
        index = {v: i for i, v in enumerate(variants)}
        n_var = len(variants)
        counts = np.array([int(r["n"]) for r in rows], dtype=np.int64)

        first = min((int(r["first"]) for r in rows), default=0)
        sums = ExperimentSums(
            key=str(key),
            variants=variants,
            counts=counts,
            sums=_grid(rows, "s", n_metrics),
            squares=_grid(rows, "q", n_metrics),
            positives=_grid(rows, "p", n_metrics),
            exposure_rows=int(info["rows"]),
            duplicates=int(info["rows"]) - int(info["groups"]),
            multiple_variant_units=int(info["mixed"]),
            before_exposure=sum(int(r["b"]) for r in rows),
            first_exposure_ms=first,
        )
        if not specs or not n_var:
            out.append(sums)
            continue
        decision = []
        for k, spec in enumerate(specs):
            n = counts.astype(np.float64)
            s = np.array([[float(r[f"m{k}_{i}"]) for i in range(4)] for r in rows])
            p = np.array([[float(r[f"m{k}_{i}{j}"]) for i, j in _PAIRS] for r in rows])
            decision.append(_to_moments(n, s, p, spec, cuped))
        distributions = []
        for k in range(len(specs)):
            mine = sorted(
                (index[r["variant"]], float(r["value"]), int(r["count"]))
                for r in hist_rows
                if r["experiment"] == key and r["k"] == k
            )
            arm = np.repeat(np.array([m[0] for m in mine], dtype=np.intp), [m[2] for m in mine])
            vals = np.repeat(np.array([m[1] for m in mine], dtype=np.float64), [m[2] for m in mine])
            distributions.append((arm, vals))
        sums = replace(sums, decision=tuple(decision), distributions=tuple(distributions))
        if timeline:
            days = list(range(first // DAY_MS, last_event // DAY_MS + 1))
            pos = {d: i for i, d in enumerate(days)}
            n_d = np.zeros((len(days), n_var))
            s_d = np.zeros((len(specs), len(days), n_var, 4))
            p_d = np.zeros((len(specs), len(days), n_var, len(_PAIRS)))
            for r in day_rows:
                if r["experiment"] != key:
                    continue
                di, vi = pos[int(r["day"])], index[r["variant"]]
                n_d[di, vi] += float(r["n"])
                for k in range(len(specs)):
                    s_d[k, di, vi] = [float(r[f"m{k}_{i}"]) for i in range(4)]
                    p_d[k, di, vi] = [float(r[f"m{k}_{i}{j}"]) for i, j in _PAIRS]
            n_c, s_c, p_c = np.cumsum(n_d, axis=0), np.cumsum(s_d, axis=1), np.cumsum(p_d, axis=1)
            sums = replace(
                sums,
                days=tuple(days),
                day_counts=n_c.astype(np.int64),
                day_moments=tuple(
                    tuple(_to_moments(n_c[i], s_c[k, i], p_c[k, i], spec, cuped) for k, spec in enumerate(specs))
                    for i in range(len(days))
                ),
            )
        out.append(sums)
    return out
