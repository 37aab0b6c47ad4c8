"""``encore experiments validate | analyze | report | compact | aa | simulate | import | export | history``:
check, analyse (text, JSON or an HTML page) and simulate experiments; commit them to the experiments
store and read its audit trail.

``analyze``, ``report``, ``compact``, ``aa`` and ``simulate`` are offline work; their modules are imported only
when they run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cli import experiments_api, experiments_growthbook
from cli.exit_codes import FAILED, OK, SRM
from cli.spark_options import add_spark_options, session_for

if TYPE_CHECKING:
    from offline.experiments.analysis import AnalysisReport


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = sub.add_parser("experiments", help="validate, analyse, simulate, plan and change experiments")
    esub = e.add_subparsers(dest="experiments_command", required=True)
    ev = esub.add_parser(
        "validate",
        help="report every problem in an experiments file, with its location; or, with --definition, "
        "pass one experiment through the experimentation API's gate",
    )
    ev.add_argument("file", type=Path, nargs="?")
    ev.add_argument("--bundle", type=Path, help="check model versions against this bundle's models")
    ev.add_argument("--models", help="comma-separated known model versions (instead of --bundle)")
    experiments_api.add_gate_options(ev)
    ev.set_defaults(func=validate)
    ea = esub.add_parser(
        "analyze", help="join exposures with outcomes: verdict, CUPED lifts, intervals, SRM (exit 3 on SRM)"
    )
    _analysis_options(ea)
    ea.add_argument("--json", action="store_true", help="machine-readable output")
    ea.set_defaults(func=analyze)
    er = esub.add_parser("report", help="the analysis as one self-contained HTML page with plots")
    _analysis_options(er)
    er.add_argument("--out", type=Path, default=Path("experiment-report.html"), help="the HTML file to write")
    er.add_argument("--title", default="Experiment results")
    er.set_defaults(func=report)
    ec = esub.add_parser("compact", help="convert closed JSONL exposure/outcome logs to Parquet (faster analysis)")
    ec.add_argument("src", type=Path, help="a log directory (exposures/ or outcomes/)")
    ec.add_argument("dest", type=Path, help="where the Parquet files go (mirrors src; not inside it)")
    ec.add_argument("--kind", choices=["exposures", "outcomes"], help="default: told by each file's first record")
    ec.add_argument("--min-age", type=_non_negative, default=60.0, help="skip files modified less than this many s ago")
    ec.add_argument("--lenient", action="store_true", help="skip malformed lines (counted) instead of failing")
    ec.add_argument(
        "--partition-by-date", action="store_true", help="write dest/date=YYYY-MM-DD/... files (UTC day of ts_ms)"
    )
    ec.add_argument(
        "--watch",
        type=_positive_float,
        metavar="SECONDS",
        help="keep running: compact again every SECONDS until SIGTERM/Ctrl-C (a sidecar beside the server); "
        "a pass that fails is reported on stderr and retried",
    )
    ec.set_defaults(func=compact)
    eaa = esub.add_parser(
        "aa", help="A/A simulation with daily looks: false-positive rate, sequential vs peeking fixed-horizon"
    )
    eaa.add_argument("--runs", type=_positive_int, default=1000)
    eaa.add_argument("--days", type=_positive_int, default=14)
    eaa.add_argument("--units-per-day", type=_positive_int, default=400)
    eaa.add_argument("--alpha", type=_open_unit_interval, default=0.05)
    eaa.add_argument("--seed", type=int, default=0)
    eaa.set_defaults(func=aa)
    es = esub.add_parser("simulate", help="run a synthetic experiment through a real server and analyse it")
    es.add_argument("--out", type=Path, default=Path("simulation"), help="where bundle, logs and outcomes go")
    es.add_argument("--users", type=int, default=1000)
    es.add_argument("--sessions", type=int, default=2, help="Home sessions per simulated user")
    es.add_argument("--seed", type=int, default=0)
    es.set_defaults(func=simulate)
    ei = esub.add_parser(
        "import", help="pass an experiments file through the gate and commit it to the store as a new revision"
    )
    ei.add_argument("file", type=Path)
    ei.add_argument("--store", required=True, help="the experiments store: file:///dir or redis[s]://…")
    ei.add_argument("--author", required=True, help="who makes the change (kept in the audit trail)")
    ei.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    ei.add_argument("--base", type=int, help="the revision this change is based on (default: the head now)")
    ei.add_argument("--bundle", type=Path, help="check model versions against this bundle's models")
    ei.add_argument("--users-per-day", type=float, help="traffic per surface for the power check")
    ei.add_argument("--exposures", type=Path, nargs="*", default=[], help="exposure logs: observed traffic")
    ei.set_defaults(func=import_file)
    ex = esub.add_parser("export", help="write a revision of the store as an experiments YAML file")
    ex.add_argument("--store", required=True, help="the experiments store: file:///dir or redis[s]://…")
    ex.add_argument("--revision", type=int, help="default: the head")
    ex.add_argument("--out", type=Path, help="default: standard output")
    ex.set_defaults(func=export_file)
    eh = esub.add_parser(
        "history", help="the audit trail, newest first: who, when, why (from the API, or --store directly)"
    )
    eh.add_argument("--store", help="read this store directly (file:///dir or redis[s]://…) instead of the API")
    eh.add_argument("--limit", type=int, default=20)
    experiments_api.add_client_options(eh)
    eh.set_defaults(func=show_history)
    experiments_api.add_parsers(esub)
    experiments_growthbook.add_parsers(esub)


def _open_unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def validate(args: argparse.Namespace) -> int:
    from serving.experiments.config import validate_file

    if args.definition is not None:
        return experiments_api.validate_definition(args)
    if args.file is None:
        raise SystemExit("file: required (or --definition FILE to use the API's gate)")
    args.file.open("rb").close()  # an unreadable file is bad input (exit 2), not a problem in it
    known: set[str] | None = None
    if args.bundle is not None:
        from models.bundle import read_manifest

        known = {m["version"] for m in read_manifest(args.bundle)["models"]}
    elif args.models:
        known = set(args.models.split(","))
    problems = validate_file(args.file, known)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return FAILED
    print(f"{args.file}: valid" + ("" if known is not None else " (model versions not checked: pass --bundle)"))
    return OK


def _analysis_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exposures", nargs="+", required=True, help="exposure logs: files or directories")
    parser.add_argument(
        "--outcomes", nargs="+", required=True, help="outcome logs (the server's): files or directories"
    )
    parser.add_argument("--experiments", type=Path, help="experiments YAML: expected weights for the SRM check")
    parser.add_argument("--metrics", type=Path, help="decision metrics YAML (default: streams, skip_rate, likes)")
    parser.add_argument(
        "--method",
        choices=["sequential", "fixed"],
        default="sequential",
        help="intervals for the verdict: always-valid (read any day) or fixed-horizon (read once)",
    )
    parser.add_argument(
        "--cuped-window-days", type=_non_negative, default=14.0, help="pre-exposure window for CUPED; 0 disables"
    )
    parser.add_argument(
        "--planned-units", type=_positive_int, help="planned units per experiment: tunes the sequential test"
    )
    parser.add_argument("--plan-complete", action="store_true", help="the experiment ran its planned course")
    parser.add_argument("--correction", choices=["holm", "bh"], default="holm", help="multiple-testing correction")
    parser.add_argument("--alpha", type=_open_unit_interval, default=0.05, help="significance level, in (0, 1)")
    parser.add_argument("--lenient", action="store_true", help="skip malformed lines (counted) instead of failing")
    parser.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="local: in this process; spark: Spark computes per-variant sums (same results; needs the spark extra)",
    )
    add_spark_options(parser)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _run_analysis(args: argparse.Namespace, *, timeline: bool) -> AnalysisReport:
    """Read the logs and analyse them with the options of ``_analysis_options`` (``timeline``: the
    cumulative analysis per day, which the text output does not show)."""
    from offline.experiments.analysis import AnalysisOptions, analyze
    from offline.experiments.metric_specs import DEFAULT_METRICS, load_metric_specs
    from offline.experiments.outcome_logs import load_exposures, load_outcomes
    from serving.experiments.config import load_experiments

    weights = None
    if args.experiments is not None:
        config = load_experiments(args.experiments)
        weights = {e.key: dict(e.weights_by_variant) for e in config.all_experiments}
        if config.holdout is not None:
            c = config.holdout.coverage
            weights[config.holdout.key] = {"holdout": c, "general": 1.0 - c}
    options = AnalysisOptions(
        expected_weights=weights,
        correction=args.correction,
        alpha=args.alpha,
        decision_metrics=DEFAULT_METRICS if args.metrics is None else load_metric_specs(args.metrics),
        method=args.method,
        cuped_window_days=args.cuped_window_days,
        planned_units=args.planned_units,
        plan_complete=args.plan_complete,
        timeline=timeline,
    )
    if args.engine == "spark":
        if args.lenient:
            raise SystemExit("--lenient is not supported with --engine spark (it fails on the first bad record)")
        from offline.experiments.spark_engine import analyze_spark

        spark = session_for(args, "encore-experiments-analyze")
        try:
            return analyze_spark(spark, args.exposures, args.outcomes, options)
        finally:
            spark.stop()
    return analyze(
        load_exposures(args.exposures, strict=not args.lenient),
        load_outcomes(args.outcomes, strict=not args.lenient),
        options,
    )


def analyze(args: argparse.Namespace) -> int:
    import json

    from offline.experiments.report import format_report, report_to_json

    report = _run_analysis(args, timeline=args.json)
    print(json.dumps(report_to_json(report), indent=2, allow_nan=False) if args.json else format_report(report))
    return SRM if report.srm_flagged else OK


def report(args: argparse.Namespace) -> int:
    from offline.experiments.html_report import render_html

    result = _run_analysis(args, timeline=True)
    page = render_html(result, title=args.title, sources=[*map(str, args.exposures), *map(str, args.outcomes)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(args.out)
    for exp in result.experiments:
        print(f"{exp.experiment}: {'no decision' if exp.verdict is None else exp.verdict.label}")
    print(f"wrote {args.out} ({len(page.encode()) // 1024} KiB)")
    return SRM if result.srm_flagged else OK


def compact(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading

    from offline.experiments.compact import CompactEvent, CompactSummary, compact_logs
    from offline.experiments.outcome_logs import AnalysisInputError

    def progress(event: CompactEvent) -> None:
        if event.action == "converted":
            print(f"{event.source} -> {event.dest}: {event.rows:,} rows in {event.seconds:.1f} s", flush=True)

    def once() -> CompactSummary:
        return compact_logs(
            args.src,
            args.dest,
            kind=args.kind,
            strict=not args.lenient,
            min_age_s=args.min_age,
            progress=progress,
            partition_by_date=args.partition_by_date,
        )

    def report(summary: CompactSummary) -> None:
        print(
            f"{summary.converted} converted ({summary.rows:,} rows, {summary.skipped_lines} malformed lines "
            f"skipped), {summary.current} already current, {summary.open} still open, {summary.empty} empty",
            flush=True,
        )

    if args.dest.resolve().is_relative_to(args.src.resolve()):
        raise SystemExit(f"encore experiments compact: dest {args.dest} must not be inside src {args.src}")
    if args.watch is None:
        report(once())
        return OK
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _signum, _frame: stop.set())
    print(f"compacting {args.src} -> {args.dest} every {args.watch:g} s until SIGTERM/Ctrl-C", flush=True)
    while True:
        try:
            summary = once()
            if summary.converted:
                report(summary)
        except (AnalysisInputError, OSError) as exc:  # a bad or vanished file: say so, try again next pass
            print(f"encore experiments compact: {exc} (retrying in {args.watch:g} s)", file=sys.stderr, flush=True)
        if stop.wait(args.watch):
            print("stopped", flush=True)
            return OK


def aa(args: argparse.Namespace) -> int:
    from offline.experiments.aa_simulation import simulate_aa

    result = simulate_aa(args.runs, args.days, args.units_per_day, args.alpha, args.seed, progress=print)
    print(result.table())
    return OK


def simulate(args: argparse.Namespace) -> int:
    import asyncio

    from offline.experiments.simulation import SimulationConfig, simulate_and_analyze

    config = SimulationConfig(out_dir=args.out, n_users=args.users, sessions_per_user=args.sessions, seed=args.seed)
    outcome = asyncio.run(simulate_and_analyze(config, progress=lambda line: print(line, flush=True)))
    print(outcome.report_text)
    print(outcome.verdict)
    return OK if outcome.detected else FAILED


def _known_models(bundle: Path | None) -> set[str] | None:
    if bundle is None:
        return None
    from models.bundle import read_manifest

    return {m["version"] for m in read_manifest(bundle)["models"]}


def import_file(args: argparse.Namespace) -> int:
    """Pass ``file`` through the gate against the store's head and commit it; exit 1 listing every problem."""
    import asyncio

    from experimentation.gate import Gate
    from experimentation.planner import TrafficEstimate, traffic_estimates
    from serving.experiments.config import ExperimentConfigError, read_experiments_document
    from serving.experiments.store import json_document, open_store

    try:
        data = json_document(read_experiments_document(args.file))
    except ExperimentConfigError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s); nothing committed")
        for problem in exc.problems:
            print(f"  {problem}")
        return FAILED

    async def commit() -> tuple[list[str], str]:
        store = open_store(args.store)
        try:
            base = args.base if args.base is not None else await store.head()
            before = dict((await store.get(base)).document) if base else {}
            stated = TrafficEstimate(args.users_per_day or 0.0, "--users-per-day")
            traffic = traffic_estimates(args.exposures, before, stated)
            problems = Gate(_known_models(args.bundle), traffic).check_import(before, data)
            if problems:
                return problems, ""
            revision = await store.commit(base, data, args.author, args.reason)
            return [], f"{store.url}: committed revision {revision.number} (based on {base}) by {revision.author}"
        finally:
            await store.close()

    problems, done = asyncio.run(commit())
    if problems:
        print(f"{args.file}: {len(problems)} problem(s); nothing committed")
        for problem in problems:
            print(f"  {problem}")
        return FAILED
    print(done)
    return OK


def export_file(args: argparse.Namespace) -> int:
    import asyncio

    import yaml

    from serving.experiments.store import open_store

    async def read() -> tuple[int, object]:
        store = open_store(args.store)
        try:
            number = args.revision if args.revision is not None else await store.head()
            if number == 0:
                return 0, {}
            return number, dict((await store.get(number)).document)
        finally:
            await store.close()

    number, document = asyncio.run(read())
    text = f"# revision {number} of {args.store}\n" + yaml.safe_dump(document, sort_keys=False)
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text, encoding="utf-8")
    return OK


def show_history(args: argparse.Namespace) -> int:
    if args.store is None:
        return experiments_api.log_revisions(args)
    import asyncio
    import datetime as dt
    import json

    from serving.experiments.lifecycle import experiments_of
    from serving.experiments.store import history, open_store

    async def read() -> list[dict[str, object]]:
        store = open_store(args.store)
        try:
            return [
                {
                    "revision": r.number,
                    "committed_at": dt.datetime.fromtimestamp(r.committed_at, dt.UTC).isoformat(timespec="seconds"),
                    "author": r.author,
                    "reason": r.reason,
                    "experiments": sum(1 for _ in experiments_of(r.document)),
                }
                for r in await history(store, args.limit)
            ]
        finally:
            await store.close()

    rows = asyncio.run(read())
    if args.json:
        print(json.dumps(rows, indent=2))
        return OK
    if not rows:
        print(f"{args.store}: no revisions")
        return OK
    print(f"{'rev':>5}  {'committed (UTC)':<25}  {'author':<16}  {'exps':>4}  reason")
    for row in rows:
        print(
            f"{row['revision']:>5}  {row['committed_at']!s:<25}  {row['author']!s:<16}  {row['experiments']:>4}  "
            f"{row['reason']}"
        )
    return OK
