"""A synthetic experiment run end to end through the real server, then analysed.

``encore experiments simulate`` (and an e2e test) does what a team does when it ships a ranker
behind an experiment, with simulated listeners instead of real ones:

1. builds a small synthetic bundle with two rankers (real ONNX models): ``dot-v1`` (control:
   retrieval order, the raw inner product, which favours items with long vectors — popular ones)
   and ``cosine-v1`` (treatment: cosine to the user's taste and recent plays);
2. serves it on a real gRPC server (loopback, free port) with a 50/50 experiment on Home and
   the exposure and outcome logs on;
3. simulated users call ``Rank`` over gRPC and stream each shown item with probability
   ``position_bias(p) × appeal(taste · item)`` — their hidden taste is their ALS vector plus noise —
   skip it otherwise (top 5 only), and report what they did with ``RecordEvents``;
4. analyses the server's exposure log × its outcome log (nothing written by the client) with
   ``offline.experiments.analysis`` and reports whether the better arm (treatment) won
   significantly with no sample ratio mismatch.

All randomness is seeded: the same config gives the same users, sessions and decisions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
from numpy.typing import NDArray

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from features.snapshot import UserSnapshot
from features.synthetic import generate_synthetic
from models.bundle import BundleContents, load_bundle, write_bundle
from models.linear_ranker import linear_ranker
from models.training import compute_tables, popularity_order, train_embeddings
from offline.experiments.analysis import AnalysisOptions, AnalysisReport, analyze
from offline.experiments.outcome_logs import load_exposures, load_outcomes
from offline.experiments.report import format_report
from serving.config import Settings, load_settings
from serving.experiments.config import load_experiments
from serving.server import create_server, mark_serving

log = logging.getLogger(__name__)

EXPERIMENT_KEY = "home-ranker-sim"
CONTROL_MODEL = "dot-v1"
TREATMENT_MODEL = "cosine-v1"
EXPERIMENTS_YAML = f"""\
experiments:
  - key: {EXPERIMENT_KEY}
    surface: home
    coverage: 1.0
    status: running
    variants:
      - {{key: control, weight: 0.5, params: {{model_version: {CONTROL_MODEL}}}}}
      - {{key: treatment, weight: 0.5, params: {{model_version: {TREATMENT_MODEL}}}}}
"""
SKIP_DEPTH = 5


@dataclass(frozen=True)
class SimulationConfig:
    out_dir: Path
    n_items: int = 3_000
    n_users: int = 1_000
    sessions_per_user: int = 2
    limit: int = 10
    taste_noise: float = 0.5
    concurrency: int = 8
    seed: int = 0
    pre_period: bool = True
    """Listen once before the experiment starts too (no experiment, default model): the outcomes
    CUPED uses as each user's pre-exposure covariate."""


@dataclass(frozen=True)
class SimulationRun:
    """Where the run left its files, and what it sent. ``exposures`` and ``outcomes`` are the
    server's log directories."""

    bundle: Path
    experiments: Path
    exposures: Path
    outcomes: Path
    requests: int
    streams: int
    errors: int


def build_simulation_bundle(config: SimulationConfig) -> Path:
    """A synthetic catalog, ALS vectors on all its plays, and the two linear rankers."""
    data = generate_synthetic(config.n_items, config.n_users, seed=config.seed)
    emb = train_embeddings(data.plays, factors=32, seed=config.seed)
    tables = compute_tables(data.plays)
    contents = BundleContents(
        version=f"simulation-{config.seed}",
        item_ids=data.item_ids,
        artist_ids=data.artist_ids,
        item_names=data.item_names,
        item_vectors=emb.item_vectors,
        item_stats=tables.item_stats,
        popularity=popularity_order(tables.listeners, 1000),
        models={
            CONTROL_MODEL: linear_ranker({"retrieval_score": 1.0}),
            TREATMENT_MODEL: linear_ranker({"user_item_cosine": 1.0, "recent_item_cosine": 0.3}),
        },
        default_model=CONTROL_MODEL,
        users=UserSnapshot(data.user_ids, emb.user_vectors, tables.user_stats),
        dataset={**data.summary(), "purpose": "experiment simulation"},
    )
    path = config.out_dir / "bundles" / contents.version
    return path if (path / "manifest.json").is_file() else write_bundle(contents, path)


def _unit(m: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(m, axis=-1, keepdims=True)
    return np.asarray(m / np.maximum(norms, 1e-6), dtype=np.float32)


class SimulatedListeners:
    """Hidden tastes and seeded stream/skip decisions for the bundle's users."""

    def __init__(self, bundle_path: Path, noise: float, seed: int) -> None:
        bundle = load_bundle(bundle_path, verify_checksums=False)
        users = bundle.load_users()
        rng = np.random.default_rng(seed)
        vectors = _unit(users.vectors)
        self.user_ids = users.user_ids
        self.taste = _unit(vectors + noise * rng.normal(size=vectors.shape).astype(np.float32) / np.sqrt(bundle.dim))
        self.items = _unit(np.asarray(bundle.item_vectors))
        self.index_of = bundle.catalog.index_of
        # Appeal is calibrated so that an item at the 95th percentile of a user's affinities is
        # streamed about half the time at the top position.
        sample = self.taste[rng.choice(len(self.user_ids), size=min(200, len(self.user_ids)), replace=False)]
        self.pivot = float(np.quantile(sample @ self.items.T, 0.95))
        # Some listeners come back far more often than others, in every period (Gamma, mean 1).
        self.activity = rng.gamma(2.0, 0.5, len(self.user_ids))
        self._seed = seed

    def sessions(self, user: int, typical: int) -> int:
        """How many Home sessions ``user`` has in a period where a typical user has ``typical``."""
        return max(1, round(float(self.activity[user]) * typical))

    def decide(self, user: int, session: int, item_ids: list[str]) -> list[bool]:
        """Whether the user streams each shown item, best position first (seeded per session)."""
        rng = np.random.default_rng((self._seed, user, session))
        idx = np.asarray([self.index_of[i] for i in item_ids], dtype=np.int64)
        affinity = self.items[idx] @ self.taste[user]
        appeal = 1.0 / (1.0 + np.exp(-12.0 * (affinity - self.pivot)))
        position_bias = 1.0 / np.log2(np.arange(len(idx)) + 2.0)
        streamed: list[bool] = (rng.random(len(idx)) < 0.9 * appeal * position_bias).tolist()
        return streamed


async def _listen(
    stub: pb_grpc.RankingServiceAsyncStub,
    listeners: SimulatedListeners,
    user: int,
    config: SimulationConfig,
    first_session: int,
) -> tuple[int, int, int]:
    requests = streams = errors = 0
    user_id = listeners.user_ids[user]
    for session in range(first_session, first_session + listeners.sessions(user, config.sessions_per_user)):
        try:
            response = await stub.Rank(
                pb.RankRequest(user_id=user_id, surface=pb.SURFACE_HOME, limit=config.limit), timeout=2.0
            )
        except grpc.aio.AioRpcError:
            errors += 1
            continue
        requests += 1
        shown = [i.item_id for i in response.items]
        decisions = listeners.decide(user, session, shown)
        ts_ms = int(time.time() * 1000)
        events = []
        for position, (item_id, streamed) in enumerate(zip(shown, decisions, strict=True)):
            if streamed:
                streams += 1
                events.append(pb.Event(type=pb.EVENT_TYPE_PLAY, item_id=item_id, timestamp_ms=ts_ms))
            elif position < SKIP_DEPTH:
                events.append(pb.Event(type=pb.EVENT_TYPE_SKIP, item_id=item_id, timestamp_ms=ts_ms))
        if events:
            await stub.RecordEvents(pb.RecordEventsRequest(user_id=user_id, events=events), timeout=2.0)
    return requests, streams, errors


async def _serve_and_listen(
    settings: Settings,
    listeners: SimulatedListeners,
    config: SimulationConfig,
    *,
    first_session: int,
    progress: Callable[[str], None],
) -> NDArray[np.int64]:
    """Serve ``settings`` on a free loopback port while every user listens; (requests, streams, errors)."""
    from serving.app import lifespan

    totals = np.zeros(3, dtype=np.int64)
    async with lifespan(settings) as app:
        server, port, health = await create_server(app, "127.0.0.1", 0)
        await server.start()
        await mark_serving(health, True)
        progress(f"serving on 127.0.0.1:{port}; {len(listeners.user_ids)} simulated users")
        limit = asyncio.Semaphore(config.concurrency)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.RankingServiceStub(channel)

            async def one(user: int) -> tuple[int, int, int]:
                async with limit:
                    return await _listen(stub, listeners, user, config, first_session)

            tasks = asyncio.as_completed([one(u) for u in range(len(listeners.user_ids))])
            for done, result in enumerate(tasks, start=1):
                totals += np.asarray(await result)
                if done % max(1, len(listeners.user_ids) // 5) == 0:
                    progress(f"  {done}/{len(listeners.user_ids)} users done")
        await server.stop(1.0)
    return totals


async def run_simulation(config: SimulationConfig, progress: Callable[[str], None] = print) -> SimulationRun:
    """Build, serve, simulate; returns the server's exposure and outcome log directories."""

    config.out_dir.mkdir(parents=True, exist_ok=True)
    progress(f"building the simulation bundle ({config.n_items} items, {config.n_users} users)")
    bundle_path = build_simulation_bundle(config)
    experiments = config.out_dir / "experiments.yaml"
    experiments.write_text(EXPERIMENTS_YAML, encoding="utf-8")
    started = int(time.time())
    exposures, outcomes = config.out_dir / f"exposures-{started}", config.out_dir / f"outcomes-{started}"
    settings = replace(
        load_settings(bundle_path),
        experiments=experiments,
        exposure_log_dir=exposures,
        outcome_log_dir=outcomes,
        metrics_port=None,
        # the simulated listeners send ``concurrency`` calls at once: admit them all (not a load test)
        max_in_flight=max(4, config.concurrency),
        max_pending=max(4, 2 * config.concurrency),
    )
    listeners = SimulatedListeners(bundle_path, config.taste_noise, config.seed)
    totals = np.zeros(3, dtype=np.int64)
    if config.pre_period:
        progress("pre-period: the same users listen before the experiment starts (no exposures)")
        pre = replace(settings, experiments=None, exposure_log_dir=None)
        totals += await _serve_and_listen(pre, listeners, config, first_session=10_000, progress=progress)
    progress("experiment period")
    totals += await _serve_and_listen(settings, listeners, config, first_session=0, progress=progress)
    return SimulationRun(
        bundle=bundle_path,
        experiments=experiments,
        exposures=exposures,
        outcomes=outcomes,
        requests=int(totals[0]),
        streams=int(totals[1]),
        errors=int(totals[2]),
    )


@dataclass(frozen=True)
class SimulationOutcome:
    run: SimulationRun
    report: AnalysisReport
    report_text: str
    detected: bool  # treatment beat control significantly on streams, and no SRM
    verdict: str


def judge(report: AnalysisReport) -> tuple[bool, str]:
    """Did the analysis find the better arm (treatment, more streams) without an SRM, and say ship it?"""
    result = next((e for e in report.experiments if e.experiment == EXPERIMENT_KEY), None)
    if result is None:
        return False, f"FAIL: no exposures for {EXPERIMENT_KEY}"
    if result.srm.flagged:
        return False, f"FAIL: sample ratio mismatch in {EXPERIMENT_KEY} (p={result.srm.p_value})"
    if result.verdict is None or result.verdict.kind != "ship" or result.verdict.variant != "treatment":
        label = "none" if result.verdict is None else result.verdict.label
        return False, f"FAIL: the verdict is {label!r}, not 'ship (treatment)'"
    streams = next((m for m in result.metrics if m.metric == "stream"), None)
    comparison = None if streams is None else next((c for c in streams.comparisons if c.variant == "treatment"), None)
    if comparison is None:
        return False, "FAIL: no stream comparison for treatment"
    if not (comparison.significant and comparison.abs_lift > 0):
        return False, f"FAIL: treatment not significantly better on streams (adj p={comparison.p_adjusted})"
    rel = "n/a" if comparison.rel_lift is None else f"{comparison.rel_lift:+.1%}"
    return True, (
        f"OK: treatment ({TREATMENT_MODEL}) beats control ({CONTROL_MODEL}) on streams per user by "
        f"{comparison.abs_lift:+.3f} ({rel}), adjusted p={comparison.p_adjusted:.2g}; "
        f"no sample ratio mismatch (p={result.srm.p_value:.2g})"
    )


async def simulate_and_analyze(config: SimulationConfig, progress: Callable[[str], None] = print) -> SimulationOutcome:
    """``run_simulation`` then the analysis with the experiment's configured weights."""
    run = await run_simulation(config, progress)
    progress(f"{run.requests} Rank calls, {run.streams} streams, {run.errors} errors; analysing")
    experiments = load_experiments(run.experiments)
    weights = {e.key: dict(e.weights_by_variant) for e in experiments.all_experiments}
    report = analyze(
        load_exposures([run.exposures]), load_outcomes([run.outcomes]), AnalysisOptions(expected_weights=weights)
    )
    detected, verdict = judge(report)
    return SimulationOutcome(run, report, format_report(report), detected and run.errors == 0, verdict)
