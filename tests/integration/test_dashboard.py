"""deploy/grafana and deploy/compose: the Encore dashboard and the one-command stack.

The dashboard's queries are checked against a live ``encore serve`` (a real process on the tiny
bundle, driven with Rank and RecordEvents calls, an experiment and a shadow model so that the
labelled series exist): every metric a query reads must be exported on ``/metrics`` (histogram
``_bucket``/``_sum``/``_count`` samples included) or be a recording rule of
deploy/prometheus/encore-rules.yaml, every label it matches or groups by must exist on those
metrics, and every ``=`` matcher on a served series must select one. Every expression must parse
with ``promtool check rules`` (Grafana's interval variables replaced by 5m first).

The compose file cannot be started here (its images are not pullable), so its structure is
checked: services, images, ports and that every mount names a file of this repository; the
Prometheus config is checked by promtool in the filesystem layout the mounts give it.
promtool comes from Debian's ``prometheus`` package (``make test`` installs it); without it these
tests fail, they never skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import ServerProcess, scrape_metric, start_server, stop_server
from serving.metrics import Metrics
from tests.e2e.conftest import EXPERIMENTS
from tests.support import REPO, promtool

pytestmark = pytest.mark.integration

COMPOSE_FILE = REPO / "deploy" / "compose" / "compose.yaml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "encore.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "encore.yaml"
RULES = REPO / "deploy" / "prometheus" / "encore-rules.yaml"
ALERTS = REPO / "deploy" / "prometheus" / "encore-alerts.yaml"

#: Grafana's interval variables, replaced before a query is handed to promtool or checked.
GRAFANA_VARIABLES = ("$__rate_interval", "$__interval", "$__range")
DEADLINE_S = 30.0

SETTINGS = "surfaces:\n  home: {shadow_model: linear-v2}\n"


# ---------------------------------------------------------------------------------------------
# The dashboard and its queries


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def panels() -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found += [panel, *panel.get("panels", [])]
    return found


def queries() -> list[tuple[str, str]]:
    """(``panel <id> <refId>``, PromQL with Grafana's variables replaced) for every target."""
    found = []
    for panel in panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable in GRAFANA_VARIABLES:
                expr = expr.replace(variable, "5m")
            found.append((f"panel {panel['id']} {target['refId']}", expr))
    return found


_SELECTOR = re.compile(r'([A-Za-z_:][\w:]*)\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}')
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_CLAUSE = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}


@dataclass
class Query:
    """What a PromQL expression reads: metric names, its selectors' matchers and its grouping labels."""

    metrics: set[str] = field(default_factory=set)
    matchers: list[tuple[str, str, str, str]] = field(default_factory=list)  # (metric, label, op, value)
    grouping: set[str] = field(default_factory=set)


def analyse(expr: str) -> Query:
    """Metric names (identifiers that are not functions, keywords or numbers), the label matchers of
    each ``metric{...}`` selector and every label of ``by``/``without``/``on``/``ignoring``/``group_*``."""
    query = Query()

    def selector(match: re.Match[str]) -> str:
        for label, op, value in _MATCHER.findall(match.group(2)):
            query.matchers.append((match.group(1), label, op, value))
        return match.group(1)

    text = _SELECTOR.sub(selector, expr)
    text = _STRING.sub('""', text)
    for labels in _CLAUSE.findall(text):
        query.grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    text = _RANGE.sub("", _CLAUSE.sub(" ", text))
    for match in _IDENTIFIER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isdigit() or before == ".":  # the exponent or unit of a number
            continue
        if text[match.end() :].lstrip().startswith("(") or match.group() in _KEYWORDS:
            continue
        query.metrics.add(match.group())
    return query


def rule_labels() -> dict[str, set[str]]:
    """Every recording rule of encore-rules.yaml → the labels its series carry (its ``labels`` and the
    labels its expression groups by, ``le`` aside)."""
    labels: dict[str, set[str]] = {}
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                carried = (analyse(rule["expr"]).grouping - {"le"}) | set(rule.get("labels", {}))
                labels.setdefault(rule["record"], set()).update(carried)
    return labels


def sample_names(family: str, kind: str) -> list[str]:
    """The sample names Prometheus stores for a metric family of type ``kind``."""
    if kind == "counter":
        return [f"{family}_total"]
    if kind == "histogram":
        return [f"{family}_bucket", f"{family}_sum", f"{family}_count"]
    return [family]


def without_created(names: set[str]) -> set[str]:
    """``names`` without the ``_created`` gauges prometheus_client adds for counters and histograms."""
    return {name for name in names if not name.endswith("_created")}


def defined_labels() -> dict[str, set[str]]:
    """Sample name → label names, from the metric definitions in serving/metrics.py."""
    labels: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if isinstance(metric, MetricWrapperBase):
            names = sample_names(metric._name, str(metric._type))
            if metric._type in ("counter", "histogram"):
                names.append(f"{metric._name}_created")
            for name in names:
                labels[name] = set(metric._labelnames) | ({"le"} if name.endswith("_bucket") else set())
    return labels


def problems(expr: str, known: dict[str, set[str]], served: dict[str, list[dict[str, str]]]) -> list[str]:
    """What is wrong with ``expr`` given the known series (name → labels) and the served samples
    (name → label sets of the live samples): unknown metrics, unknown labels, ``=`` matchers that
    select none of a served metric's samples. Empty when nothing is."""
    query = analyse(expr)
    found = [f"no metric in {expr!r}"] if not query.metrics else []
    found += [f"unknown metric {name}" for name in sorted(query.metrics - known.keys())]
    available = set().union(*(known.get(name, set()) for name in query.metrics))
    found += [f"unknown grouping label {label}" for label in sorted(query.grouping - available)]
    for metric, label, _, _ in query.matchers:
        if metric in known and label not in known[metric]:
            found.append(f"{metric} has no label {label}")
    for metric in {m for m, *_ in query.matchers} & served.keys():
        equal = {label: value for m, label, op, value in query.matchers if m == metric and op == "="}
        if not any(all(sample.get(k) == v for k, v in equal.items()) for sample in served[metric]):
            found.append(f"no served {metric} sample matches {equal}")
    return found


def check_with_promtool(exprs: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``promtool check rules`` on ``exprs`` written as recording rules."""
    rules = [{"record": f"dashboard:query_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_the_dashboard_is_valid_json_with_unique_panel_ids_and_titles() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] == "Encore"
    all_panels = panels()
    ids = [p["id"] for p in all_panels]
    titles = [p["title"] for p in all_panels]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids), ids
    assert all(titles) and len(set(titles)) == len(titles), titles
    datasource_uid = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]["uid"]
    cells: set[tuple[int, int]] = set()
    for panel in all_panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"{panel['title']} overlaps another panel"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == datasource_uid, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"]["uid"] == datasource_uid, panel["title"]


def test_the_dashboard_covers_the_service_and_reads_the_recording_rules() -> None:
    read = set().union(*(analyse(expr).metrics for _, expr in queries()))
    assert {
        "encore_requests_total",
        "encore_request_duration_seconds_bucket",
        "encore_stage_duration_seconds_bucket",
        "encore_degraded_total",
        "encore_shed_requests_total",
        "encore_exposures_total",
        "encore_outcomes_total",
        "encore_shadow_rbo_bucket",
        "encore_shadow_overlap_at_10_sum",
    } <= read
    # the SLO panels read the recorded SLIs (every window the alerts use) rather than recomputing them
    windows = {"5m", "30m", "1h", "6h", "1d", "3d"}
    assert {f"slo:sli_error:ratio_rate{w}" for w in windows} | {"slo:objective:ratio"} <= read
    assert {"surface:encore_degraded_per_request:ratio_rate10m", "method:encore_shed_requests:ratio_rate5m"} <= read
    for slo in ("rank-availability", "rank-latency"):
        burn = [expr for _, expr in queries() if f'slo="{slo}"' in expr and "slo:objective:ratio" in expr]
        assert {w for w in windows if any(f"ratio_rate{w}{{" in expr for expr in burn)} == windows, slo


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    exprs = [expr for _, expr in queries()]
    assert len(exprs) >= 30
    assert not [expr for expr in exprs if "$" in expr], "a Grafana variable is left in a query"
    result = check_with_promtool(exprs, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(exprs)} rules found" in output, output


def test_promtool_refuses_a_query_that_does_not_parse(tmp_path: Path) -> None:
    """Control: the check above really parses the expressions."""
    result = check_with_promtool(["sum by (surface (rate(encore_requests_total[5m]))"], tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr


def test_the_query_check_finds_unknown_metrics_and_labels() -> None:
    """Control: a misspelt metric, a label the metric lacks or a matcher that selects nothing is reported."""
    known = defined_labels() | rule_labels()
    served = {"encore_requests_total": [{"method": "Rank", "surface": "home", "outcome": "OK"}]}
    assert problems("sum(rate(encore_request_total[5m]))", known, served) == ["unknown metric encore_request_total"]
    assert problems("sum by (stage) (rate(encore_requests_total[5m]))", known, served) == [
        "unknown grouping label stage"
    ]
    assert problems('encore_shadow_rbo_count{experiment="x"}', known, served) == [
        "encore_shadow_rbo_count has no label experiment"
    ]
    assert problems('rate(encore_requests_total{method="rank"}[5m])', known, served) == [
        "no served encore_requests_total sample matches {'method': 'rank'}"
    ]
    assert problems('slo:sli_error:ratio_rate1h{slo="rank-latency"} * 2e3', known, served) == []
    assert problems("vector(1)", known, served) == ["no metric in 'vector(1)'"]


# ---------------------------------------------------------------------------------------------
# Against a live server


def wait_for(condition: Callable[[], bool], what: str, server: ServerProcess) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if server.process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {DEADLINE_S:g} s; server log:\n{server.log()}")
        time.sleep(0.05)


def served_total(server: ServerProcess, name: str) -> float:
    """The sum of every ``name`` sample on ``/metrics`` (e.g. over an experiment's variants)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


@pytest.fixture(scope="module")
def live_server(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real server (embedded store) with an experiment on Home and a shadow model, after a few
    Rank and RecordEvents calls on both surfaces, once their exposures and outcomes are counted."""
    tmp = tmp_path_factory.mktemp("dashboard-server")
    (tmp / "experiments.yaml").write_text(EXPERIMENTS)
    (tmp / "settings.yaml").write_text(SETTINGS)
    server = start_server(
        tiny_bundle_path, tmp, "--config", str(tmp / "settings.yaml"), "--experiments", str(tmp / "experiments.yaml")
    )
    try:
        users = [f"u{i}" for i in range(8)]
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RankingServiceStub(channel)
            for user in users:
                home = stub.Rank(pb.RankRequest(user_id=user, surface=pb.SURFACE_HOME, limit=5), timeout=10)
                assert [a.experiment for a in home.assignments] == ["home-model"]
                stub.Rank(
                    pb.RankRequest(user_id=user, surface=pb.SURFACE_NOW_PLAYING, seed_item_id="i00007"), timeout=10
                )
                events = [
                    pb.Event(type=kind, item_id=home.items[n].item_id, timestamp_ms=int(time.time() * 1000))
                    for n, kind in enumerate((pb.EVENT_TYPE_PLAY, pb.EVENT_TYPE_SKIP, pb.EVENT_TYPE_LIKE))
                ]
                assert stub.RecordEvents(pb.RecordEventsRequest(user_id=user, events=events), timeout=10).accepted == 3
        n = len(users)
        wait_for(lambda: served_total(server, "encore_exposures_total") >= n, "an exposure per Home user", server)
        for metric in ("stream", "skip", "like"):
            wait_for(
                lambda metric=metric: scrape_metric(server, "encore_outcomes_total", metric=metric) >= n,  # type: ignore[misc]
                f"{metric} outcomes",
                server,
            )
        yield server
    finally:
        stop_server(server)


def live_scrape(server: ServerProcess) -> tuple[dict[str, str], dict[str, list[dict[str, str]]]]:
    """(family name → type, sample name → the label sets of its samples) from ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    families: dict[str, str] = {}
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = str(family.type)
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(dict(sample.labels))
    return families, samples


def test_the_server_exports_the_series_the_panels_show(live_server: ServerProcess) -> None:
    families, samples = live_scrape(live_server)
    exported = {name for family, kind in families.items() for name in sample_names(family, kind)}
    defined = defined_labels()
    assert exported <= set(defined) and without_created(exported) == without_created(set(defined)), (
        "scrape != serving/metrics.py"
    )
    for name, label_sets in samples.items():
        if name in defined:
            assert all(set(labels) == defined[name] for labels in label_sets), name
    expected = [
        ("encore_requests_total", {"method": "Rank", "surface": "home", "outcome": "OK"}),
        ("encore_requests_total", {"method": "Rank", "surface": "now_playing", "outcome": "OK"}),
        ("encore_requests_total", {"method": "RecordEvents", "outcome": "OK"}),
        ("encore_request_duration_seconds_count", {"method": "Rank", "surface": "now_playing", "outcome": "OK"}),
        ("encore_request_duration_seconds_count", {"method": "RecordEvents", "outcome": "OK"}),
        ("encore_stage_duration_seconds_count", {"surface": "home"}),
        ("encore_stage_duration_seconds_count", {"surface": "now_playing"}),
        ("encore_exposures_total", {"experiment": "home-model"}),
        ("encore_events_total", {}),
        ("encore_shadow_rbo_count", {"surface": "home", "model": "linear-v2"}),
        ("encore_shadow_overlap_at_10_count", {"surface": "home", "model": "linear-v2"}),
        ("encore_bundle_info", {"bundle_version": "tiny-0"}),
    ]
    for name, labels in expected:
        assert scrape_metric(live_server, name, **labels) > 0, (name, labels)


def test_every_panel_query_reads_exported_metrics_and_labels(live_server: ServerProcess) -> None:
    families, samples = live_scrape(live_server)
    exported = {name for family, kind in families.items() for name in sample_names(family, kind)}
    defined = defined_labels()
    known = {name: defined[name] for name in exported} | rule_labels()
    found = {where: problems(expr, known, samples) for where, expr in queries()}
    assert {where: p for where, p in found.items() if p} == {}
    assert len(found) >= 30


# ---------------------------------------------------------------------------------------------
# The compose file


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


_VARIABLE = re.compile(r"\$\{([A-Z][A-Z0-9_]*)(?::-([^}]*))?\}")


def with_defaults(value: str) -> str:
    """``value`` with every ``${VAR:-default}`` replaced by its default (a variable without one fails)."""

    def default(match: re.Match[str]) -> str:
        assert match.group(2) is not None, f"{match.group(0)} has no default"
        return match.group(2)

    return _VARIABLE.sub(default, value)


def bind_mounts(service: str) -> dict[Path, str]:
    """Host path (resolved against the compose file's directory) → container path, for one
    service's bind mounts (``host:container[:mode]`` whose host side is a path)."""
    mounts = {}
    for volume in compose()["services"][service].get("volumes", []):
        source, target, *_ = with_defaults(volume).split(":")
        if source.startswith((".", "/")):
            mounts[(COMPOSE_FILE.parent / source).resolve()] = target
    return mounts


def command_option(service: str, option: str) -> str:
    command = [with_defaults(str(arg)) for arg in compose()["services"][service]["command"]]
    return command[command.index(option) + 1]


def published(service: str) -> dict[int, tuple[str, int]]:
    """Container port → (host port variable, its default) for one service."""
    ports = {}
    for port in compose()["services"][service]["ports"]:
        match = re.fullmatch(r"\$\{STACK_BIND:-127\.0\.0\.1\}:\$\{([A-Z_]+_PORT):-(\d+)\}:(\d+)", port)
        assert match, f"{service}: {port!r} is not STACK_BIND:${{X_PORT:-default}}:container"
        ports[int(match.group(3))] = (match.group(1), int(match.group(2)))
    return ports


def test_compose_runs_encore_redis_prometheus_and_grafana() -> None:
    services = compose()["services"]
    assert set(services) == {"encore", "redis", "prometheus", "grafana", "compact-exposures", "compact-outcomes"}
    encore = services["encore"]
    assert with_defaults(encore["image"]) == "encore:0.1.0"
    assert (COMPOSE_FILE.parent / encore["build"]["context"]).resolve() == REPO
    assert encore["build"]["dockerfile"] == "Dockerfile"
    for name in ("redis", "prometheus", "grafana"):
        image = services[name]["image"]
        assert _VARIABLE.fullmatch(image), f"{name}: the base image is not a variable with a default"
        registry = with_defaults(image).split("/")[0]
        assert "." in registry, f"{name}: {image} is not fully qualified (podman needs a registry)"
    assert command_option("encore", "--host") == "0.0.0.0"
    redis_url = command_option("encore", "--redis-url")
    assert redis_url == "redis://redis:6379/0" and "redis" in encore["depends_on"]
    assert encore["entrypoint"] == ["encore"] and encore["command"][0] == "serve"


def test_compose_ports_are_stack_variables_with_distinct_defaults() -> None:
    services = compose()["services"]
    # ENCORE_* variables are the server's own settings (serving/config.py): the stack's are STACK_*
    names = {name for name, _ in _VARIABLE.findall(COMPOSE_FILE.read_text())}
    assert names and all(name.startswith("STACK_") for name in names), names
    ports = {name: published(name) for name, service in services.items() if "ports" in service}
    variables = [var for mapping in ports.values() for var, _ in mapping.values()]
    defaults = [port for mapping in ports.values() for _, port in mapping.values()]
    assert len(set(variables)) == len(variables) and len(set(defaults)) == len(defaults), ports
    assert set(ports["encore"]) == {
        int(command_option("encore", "--port")),
        int(command_option("encore", "--metrics-port")),
    }
    assert set(ports["prometheus"]) == {9090} and set(ports["grafana"]) == {3000} and set(ports["redis"]) == {6379}


def test_compose_compacts_the_servers_logs_to_date_partitioned_parquet() -> None:
    """Each compactor runs the server's image on the server's log directory (same volume)."""
    services = compose()["services"]
    for kind in ("exposures", "outcomes"):
        compactor = services[f"compact-{kind}"]
        assert compactor["image"] == services["encore"]["image"] and compactor["entrypoint"] == ["encore"]
        command = [with_defaults(str(arg)) for arg in compactor["command"]]
        assert command[:2] == ["experiments", "compact"]
        assert command[2] == command_option("encore", f"--{kind[:-1]}-log-dir")
        assert command[3].startswith(f"{services['encore']['working_dir']}/parquet/")
        assert "--partition-by-date" in command and float(command[command.index("--watch") + 1]) > 0
        assert compactor["volumes"] == [v for v in services["encore"]["volumes"] if v.startswith("encore-data:")]


def test_compose_mounts_name_files_of_the_repository() -> None:
    spec = compose()
    named = set(spec.get("volumes") or {})
    for name, service in spec["services"].items():
        for volume in service.get("volumes", []):
            source = with_defaults(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in named, f"{name}: volume {source} is not declared"
            elif (COMPOSE_FILE.parent / source).resolve() != REPO / "bundles":  # build output: `make build`
                assert (COMPOSE_FILE.parent / source).exists(), f"{name}: {source} does not exist"
    # `encore serve` without --bundle serves the newest bundle under ./bundles
    assert "--bundle" not in compose()["services"]["encore"]["command"]
    assert bind_mounts("encore") == {REPO / "bundles": f"{compose()['services']['encore']['working_dir']}/bundles"}
    prometheus = bind_mounts("prometheus")
    assert {RULES, ALERTS, COMPOSE_FILE.parent / "prometheus.yml"} == set(prometheus)
    assert set(bind_mounts("grafana")) == {GRAFANA / "provisioning", GRAFANA / "dashboards"}


def dockerfile_instructions() -> dict[str, list[str]]:
    """Instruction (upper case) → the argument text of each occurrence in the repo's Dockerfile."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            found.setdefault(instruction.upper(), []).append(rest.strip())
    return found


def test_compose_runs_the_image_the_dockerfile_builds() -> None:
    """What the compose file assumes of the image holds in the Dockerfile: the entrypoint, the working
    directory (a volume the image's user owns), the exposed ports, the build arguments and the
    health check script."""
    encore = compose()["services"]["encore"]
    dockerfile = dockerfile_instructions()
    assert [json.loads(e) for e in dockerfile["ENTRYPOINT"]][-1] == encore["entrypoint"]
    assert dockerfile["WORKDIR"][-1] == encore["working_dir"]
    volumes = [v for spec in dockerfile["VOLUME"] for v in json.loads(spec)]
    assert encore["working_dir"] in volumes
    exposed = {int(p.split("/")[0]) for spec in dockerfile["EXPOSE"] for p in spec.split()}
    assert set(published("encore")) <= exposed
    declared = {arg.split("=")[0] for arg in dockerfile["ARG"]}
    assert set(encore["build"]["args"]) <= declared
    script = encore["healthcheck"]["test"][-1]
    copies = {spec.split()[-1]: spec.split()[:-1] for spec in dockerfile["COPY"]}
    assert script in copies and all((REPO / source).is_file() for source in copies[script]), script


def test_the_prometheus_config_as_mounted_passes_promtool(tmp_path: Path) -> None:
    """The container's /etc/prometheus rebuilt from the mounts: promtool finds and accepts both rule
    files, and the one scrape target is Encore's metrics port on its compose service name."""
    root = tmp_path / "container"
    for source, target in bind_mounts("prometheus").items():
        (root / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, root / target.lstrip("/"))
    args = compose()["services"]["prometheus"]["command"]
    config = root / next(a.split("=", 1)[1] for a in args if a.startswith("--config.file=")).lstrip("/")
    result = subprocess.run([promtool(), "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "SUCCESS: 2 rule files found" in output, output
    for rules in (RULES, ALERTS):
        assert re.search(rf"Checking \S*/rules/{rules.name}\s+SUCCESS", output), output
    scrape = yaml.safe_load(config.read_text())["scrape_configs"]
    targets = [t for job in scrape for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"encore:{command_option('encore', '--metrics-port')}"]


def test_grafana_provisioning_matches_the_mounts() -> None:
    mounts = bind_mounts("grafana")
    assert mounts[GRAFANA / "provisioning"] == "/etc/grafana/provisioning"
    (datasource,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"
    assert 9090 in published("prometheus")
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert provider["options"]["path"] == mounts[GRAFANA / "dashboards"]
    home = compose()["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"


def test_make_stack_brings_up_this_compose_file() -> None:
    result = subprocess.run(
        ["make", "-s", "-n", "stack"], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "podman compose -f deploy/compose/compose.yaml up"
