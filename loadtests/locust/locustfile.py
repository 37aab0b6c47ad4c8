"""Load test of Encore's gRPC API with a realistic traffic mix (`make loadtest` runs it headless).

    locust -f loadtests/locust/locustfile.py --headless -u 20 -r 10 -t 30s --host 127.0.0.1:50051 \
        --bundle bundles/<version> [--max-p99-ms 25] [--max-error-ratio 0.01]

Each locust user stands for a client backend serving many listeners. Listeners are the bundle's
users, drawn with Zipfian popularity (a few heavy listeners, a long tail; seeded), plus a share of
cold listeners the service has never seen. Tasks: Home (60 %), Now Playing (30 %, the seed is one
of the items the listener was just shown, or an item drawn by popularity) and RecordEvents (10 %, a
few plays, skips and likes of what the listener was just shown, or of popular items). Statistics
are split into "Rank home", "Rank now_playing" and "RecordEvents".

The bundle (``--bundle`` or ``ENCORE_BUNDLE``; default: the newest under ./bundles) is read
directly — user ids, item ids and the popularity order — so this process stays light.

When the run ends, it fails (exit code 1, reasons logged) if the p99 response time of all requests
or of any request name exceeds ``--max-p99-ms``, if the share of failed requests exceeds
``--max-error-ratio``, if the locustfile raised, or if no request was made.
"""

from __future__ import annotations

import bisect
import csv
import logging
import random
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

import numpy as np
from locust import between, events, task
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.locust.grpc_user import GrpcUser, method_name

log = logging.getLogger("encore.loadtest")

SURFACE_NAMES = {pb.SURFACE_HOME: "home", pb.SURFACE_NOW_PLAYING: "now_playing"}
DEVICES = ("ios", "android", "web")
LOCALES = ("en-GB", "en-US", "de-DE", "fr-FR", "pt-BR", "ja-JP")
EVENT_TYPES = (pb.EVENT_TYPE_PLAY, pb.EVENT_TYPE_SKIP, pb.EVENT_TYPE_LIKE)
EVENT_WEIGHTS = (0.6, 0.3, 0.1)
REMEMBERED_LISTENERS = 2_000  # per locust user: what each recent listener was last shown


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _add_arguments(parser: LocustArgumentParser) -> None:
    group = parser.add_argument_group("Encore", "traffic mix and pass/fail limits")
    group.add_argument(
        "--bundle",
        env_var="ENCORE_BUNDLE",
        default="",
        help="bundle directory to draw users and items from (default: newest under ./bundles)",
    )
    group.add_argument("--max-p99-ms", type=float, default=25.0, help="fail the run when a p99 exceeds this (ms)")
    group.add_argument(
        "--max-error-ratio", type=float, default=0.01, help="fail the run when this share of requests fails"
    )
    group.add_argument("--rpc-timeout", type=float, default=0.5, help="gRPC deadline of each request (seconds)")
    group.add_argument("--zipf-exponent", type=float, default=1.1, help="skew of listener and item popularity")
    group.add_argument("--cold-share", type=float, default=0.05, help="share of requests from never-seen listeners")
    group.add_argument("--seed", type=int, default=0, help="seed of the traffic generator")


def newest_bundle(parent: Path) -> Path:
    candidates = [p for p in parent.glob("*") if (p / "manifest.json").is_file()]
    if not candidates:
        raise SystemExit(f"loadtest: no bundle under {parent}/; pass --bundle or set ENCORE_BUNDLE")
    return max(candidates, key=lambda p: p.stat().st_mtime)


def zipf_cdf(n: int, exponent: float) -> list[float]:
    """Cumulative Zipf weights over ranks 1..n, normalised to end at 1."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** exponent
    return list(accumulate((weights / weights.sum()).tolist()))


@dataclass(frozen=True)
class Traffic:
    """Who asks and what for: listeners and items with their popularity, from a bundle."""

    users: list[str]  # in popularity order (a seeded shuffle of the bundle's users)
    user_cdf: list[float]
    items: list[str]  # in popularity order (the bundle's popularity.npy)
    item_cdf: list[float]
    cold_share: float

    @classmethod
    def from_bundle(cls, bundle: Path, *, exponent: float, cold_share: float, seed: int) -> Traffic:
        users = (bundle / "user_features" / "user_ids.txt").read_text(encoding="utf-8").split()
        with (bundle / "items.tsv").open(encoding="utf-8", newline="") as fh:
            rows = csv.reader(fh, delimiter="\t")
            next(rows)  # header
            item_ids = [row[0] for row in rows]
        popularity = np.load(bundle / "popularity.npy")
        if not users or not item_ids or popularity.size == 0:
            raise SystemExit(f"loadtest: {bundle} has no users, items or popularity order")
        random.Random(seed).shuffle(users)
        items = [item_ids[int(i)] for i in popularity]
        return cls(users, zipf_cdf(len(users), exponent), items, zipf_cdf(len(items), exponent), cold_share)

    def listener(self, rng: random.Random) -> str:
        if rng.random() < self.cold_share:
            return f"cold-{rng.randrange(10**9):09d}"
        return self.users[min(bisect.bisect_left(self.user_cdf, rng.random()), len(self.users) - 1)]

    def popular_item(self, rng: random.Random) -> str:
        return self.items[min(bisect.bisect_left(self.item_cdf, rng.random()), len(self.items) - 1)]


TRAFFIC: Traffic | None = None


@events.init.add_listener  # type: ignore[untyped-decorator]
def _load_traffic(environment: Environment, **_kwargs: Any) -> None:
    global TRAFFIC
    options = environment.parsed_options
    if options is None:  # run as a library without a command line
        return
    bundle = Path(options.bundle) if options.bundle else newest_bundle(Path("bundles"))
    TRAFFIC = Traffic.from_bundle(
        bundle, exponent=options.zipf_exponent, cold_share=options.cold_share, seed=options.seed
    )
    log.info(
        "traffic from bundle %s: %d listeners (+%.0f %% cold), %d items by popularity",
        bundle,
        len(TRAFFIC.users),
        100 * TRAFFIC.cold_share,
        len(TRAFFIC.items),
    )


class EncoreUser(GrpcUser[pb_grpc.RankingServiceStub]):
    """A client backend: Home 60 %, Now Playing 30 %, RecordEvents 10 %."""

    stub_class = pb_grpc.RankingServiceStub
    wait_time = between(0.05, 0.25)
    _instances = 0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if TRAFFIC is None:
            raise SystemExit("loadtest: no traffic model (run through locust's command line)")
        self.traffic = TRAFFIC
        options = environment.parsed_options
        self.timeout: float = options.rpc_timeout if options else 0.5
        seed: int = options.seed if options else 0
        EncoreUser._instances += 1
        self.rng = random.Random(seed * 1_000_003 + EncoreUser._instances)
        self.shown: OrderedDict[str, list[str]] = OrderedDict()  # listener → items last shown
        self.last_listener: str | None = None

    def request_name(self, method: str, request: Any) -> str:
        name = method_name(method)
        if isinstance(request, pb.RankRequest):
            return f"{name} {SURFACE_NAMES.get(request.surface, 'unspecified')}"
        return name

    def _context(self) -> pb.RequestContext:
        return pb.RequestContext(
            device=self.rng.choice(DEVICES),
            locale=self.rng.choice(LOCALES),
            client_timestamp_ms=int(time.time() * 1000),
        )

    def _rank(self, listener: str, surface: pb.Surface.ValueType, seed_item_id: str = "") -> None:
        request = pb.RankRequest(user_id=listener, surface=surface, seed_item_id=seed_item_id, context=self._context())
        reply = self.call(self.stub.Rank, request, timeout=self.timeout)
        if reply is not None and reply.items:
            self.shown[listener] = [item.item_id for item in reply.items]
            self.shown.move_to_end(listener)
            if len(self.shown) > REMEMBERED_LISTENERS:
                self.shown.popitem(last=False)
            self.last_listener = listener

    @task(6)
    def home(self) -> None:
        self._rank(self.traffic.listener(self.rng), pb.SURFACE_HOME)

    @task(3)
    def now_playing(self) -> None:
        listener = self.traffic.listener(self.rng)
        shown = self.shown.get(listener, [])
        # half the time they tapped something they were just shown
        tapped = bool(shown) and self.rng.random() < 0.5
        seed = self.rng.choice(shown[:10]) if tapped else self.traffic.popular_item(self.rng)
        self._rank(listener, pb.SURFACE_NOW_PLAYING, seed)

    @task(1)
    def record_events(self) -> None:
        listener = self.last_listener
        shown = self.shown.get(listener, []) if listener else []
        if listener is None or not shown:
            listener = self.traffic.listener(self.rng)
            shown = [self.traffic.popular_item(self.rng) for _ in range(10)]
        now_ms = int(time.time() * 1000)
        played = self.rng.sample(shown[:10], k=min(len(shown), self.rng.randint(1, 4)))
        request = pb.RecordEventsRequest(
            user_id=listener,
            events=[
                pb.Event(
                    type=self.rng.choices(EVENT_TYPES, weights=EVENT_WEIGHTS)[0], item_id=item, timestamp_ms=now_ms
                )
                for item in played
            ],
        )
        self.call(self.stub.RecordEvents, request, timeout=self.timeout)


def verdict(environment: Environment) -> list[str]:
    """Why the run fails (empty when it passes)."""
    options = environment.parsed_options
    max_p99: float = options.max_p99_ms if options else 25.0
    max_errors: float = options.max_error_ratio if options else 0.01
    stats = environment.stats
    reasons = []
    if stats.total.num_requests == 0:
        reasons.append("no request was made")
    if stats.total.fail_ratio > max_errors:
        reasons.append(
            f"error ratio {stats.total.fail_ratio:.4f} exceeds --max-error-ratio {max_errors:g}"
            f" ({stats.total.num_failures} of {stats.total.num_requests} requests failed)"
        )
    for name, entry in [("all requests", stats.total)] + [(f"{n!r}", e) for (n, _), e in sorted(stats.entries.items())]:
        if entry.num_requests and (p99 := entry.get_response_time_percentile(0.99)) > max_p99:
            reasons.append(f"p99 of {name} is {p99:g} ms, above --max-p99-ms {max_p99:g}")
    runner = environment.runner
    if runner is not None and runner.exceptions:
        count = sum(int(e["count"]) for e in runner.exceptions.values())
        reasons.append(f"the locustfile raised {count} exception(s)")
    return reasons


FAILURES: list[str] = []


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _check_limits(environment: Environment, **_kwargs: Any) -> None:
    FAILURES[:] = verdict(environment)
    for reason in FAILURES:
        log.error("loadtest failed: %s", reason)
    environment.process_exit_code = 1 if FAILURES else 0


@events.quit.add_listener  # type: ignore[untyped-decorator]
def _print_verdict(exit_code: int, **_kwargs: Any) -> None:
    """One closing line, after locust's summary tables."""
    if exit_code == 0:
        print("encore loadtest PASSED: p99 and error ratio within limits", file=sys.stderr)
    else:
        print(
            f"encore loadtest FAILED (exit code {exit_code}): {'; '.join(FAILURES) or 'see the log'}", file=sys.stderr
        )
