"""deploy/: Prometheus rules checked and unit-tested with promtool; Kubernetes manifests checked
against the pinned Kubernetes version's schema (kubernetes-validate, strict) and against each other.

promtool comes from Debian's ``prometheus`` package (``make test`` installs it): a missing
promtool fails these tests, it never skips them.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support import REPO, promtool

pytestmark = pytest.mark.integration

PROMETHEUS = REPO / "deploy" / "prometheus"
RULE_FILES = (PROMETHEUS / "encore-rules.yaml", PROMETHEUS / "encore-alerts.yaml")
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yaml"))
KUBERNETES = REPO / "deploy" / "kubernetes"
#: The Kubernetes version the manifests are checked against (native gRPC probes: 1.27+; the
#: preStop ``sleep`` action: 1.30+).
KUBERNETES_VERSION = "1.33.0"

#: Google SRE Workbook, "Alerting on SLOs", table 5-8: long window → (short window, burn rate, severity).
BURN_TABLE = {
    "1h": ("5m", 14.4, "page"),
    "6h": ("30m", 6.0, "page"),
    "1d": ("2h", 3.0, "ticket"),
    "3d": ("6h", 1.0, "ticket"),
}
SLO_BUDGETS = {"rank-availability": 0.001, "rank-latency": 0.01}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULE_FILES[1].read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


# ---------------------------------------------------------------------------------------------
# Prometheus


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    found = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", output)]
    expected = [sum(len(g["rules"]) for g in yaml.safe_load(f.read_text())["groups"]) for f in RULE_FILES]
    assert found == expected, output


def test_promtool_rule_unit_tests_pass() -> None:
    assert {p.name for p in RULE_TESTS} >= {
        "slo-availability.test.yaml",
        "slo-latency.test.yaml",
        "health-alerts.test.yaml",
        "experiments-alerts.test.yaml",
    }
    # one promtool per file, run side by side (the long-window SLO tests take a second or two each)
    runs = {
        path: subprocess.Popen(
            [promtool(), "test", "rules", path.name],
            cwd=path.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for path in RULE_TESTS
    }
    for path, process in runs.items():
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
        # promtool prints "Unit Testing:  FILE" then SUCCESS, or FAILED with every mismatch
        assert re.search(rf"Unit Testing:\s+{re.escape(path.name)}\s+SUCCESS", output), output
        assert "FAILED" not in output, output


def test_rule_unit_tests_cover_every_alert_firing_and_silent() -> None:
    """The unit tests are not vacuous: every alert is expected to fire somewhere and to stay silent somewhere."""
    fires: set[str] = set()
    silent: set[str] = set()
    for path in RULE_TESTS:
        spec = yaml.safe_load(path.read_text())
        assert spec["tests"], path
        for case in spec["tests"]:
            assert case["input_series"], (path, case.get("name"))
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never expected to fire"
    assert names - silent == set(), "alerts never expected to stay silent"


def test_promtool_unit_tests_fail_on_a_wrong_expectation(tmp_path: Path) -> None:
    """Control: healthy traffic expected to page must make promtool fail (the checks really run)."""
    wrong = {
        "rule_files": [str(f) for f in RULE_FILES],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'encore_requests_total{method="Rank",surface="home",outcome="OK"}',
                        "values": "0+1000x90",
                    }
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "90m",
                        "alertname": "EncoreRankAvailabilityBurnRate1h",
                        "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "wrong.test.yaml"
    path.write_text(yaml.safe_dump(wrong))
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "FAILED" in result.stdout + result.stderr


def test_burn_rate_alerts_follow_the_workbook_table() -> None:
    seen: set[tuple[str, str]] = set()
    for rule in alert_rules():
        windows = re.findall(
            r'slo:sli_error:ratio_rate(\w+)\{service="encore",slo="([\w-]+)"\} > \(([\d.]+) \* ([\d.]+)\)', rule["expr"]
        )
        if not windows:
            continue
        assert len(windows) == 2 and re.search(r"\band\b", rule["expr"]), rule["alert"]
        (long, slo, burn, budget), (short, slo2, burn2, budget2) = windows
        expected_short, expected_burn, severity = BURN_TABLE[long]
        assert (short, slo2) == (expected_short, slo), rule["alert"]
        assert float(burn) == float(burn2) == expected_burn, rule["alert"]
        assert float(budget) == float(budget2) == SLO_BUDGETS[slo], rule["alert"]
        assert rule["labels"]["severity"] == severity, rule["alert"]
        seen.add((slo, long))
    assert seen == {(slo, long) for slo in SLO_BUDGETS for long in BURN_TABLE}


def test_every_alert_has_severity_and_a_runbook_section() -> None:
    runbook = (PROMETHEUS / "RUNBOOK.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-")) for h in re.findall(r"^#+ (.+)$", runbook, re.M)
    }
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"page", "ticket", "info"}, rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        target, _, anchor = annotations["runbook_url"].partition("#")
        assert target == "deploy/prometheus/RUNBOOK.md" and anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"RUNBOOK.md has no section for {rule['alert']}"


# ---------------------------------------------------------------------------------------------
# Kubernetes


def manifests() -> dict[tuple[str, str], dict[str, Any]]:
    resources: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in resources, key
            resources[key] = doc
    return resources


def test_manifests_validate_against_the_kubernetes_schema() -> None:
    resources = manifests()
    assert {kind for kind, _ in resources} == {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for key, resource in resources.items():
        # raises ValidationError (or SchemaNotFoundError for an unknown apiVersion/kind)
        validated = kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
        assert validated == "1.33", key


def test_the_schema_check_rejects_broken_manifests() -> None:
    deployment = manifests()[("Deployment", "encore")]
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grcp"] = {"port": 50051}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "50051"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_manifests_fit_together() -> None:
    resources = manifests()
    deployment = resources[("Deployment", "encore")]
    pod = deployment["spec"]["template"]["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns replicas"
    (container,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"grpc": 50051, "metrics": 9464}

    assert [container["command"][0], *container["args"]] == [
        "encore", "serve", "--bundle", "/bundles/current", "--host", "0.0.0.0", "--port", "50051",
        "--metrics-port", "9464", "--redis-url", "$(REDIS_URL)", "--workers", "2",
    ]  # fmt: skip
    (redis_url,) = [e for e in container["env"] if e["name"] == "REDIS_URL"]
    assert redis_url["valueFrom"]["secretKeyRef"]["key"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": 50051}, probe
    assert container["resources"]["requests"]["cpu"], "the CPU autoscaler needs a CPU request"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["bundles"]["mountPath"] == "/bundles" and mounts["bundles"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["bundles"]["persistentVolumeClaim"]["readOnly"] is True
    # preStop, then the server's drain (serving.server.serve: grace 5 s), inside the grace period
    assert pod["terminationGracePeriodSeconds"] >= container["lifecycle"]["preStop"]["sleep"]["seconds"] + 5 + 5

    for kind, name in resources:
        if kind == "Service":
            service = resources[(kind, name)]["spec"]
            assert service["selector"].items() <= pod_labels.items(), name
            for port in service["ports"]:
                assert port["targetPort"] in ports, (name, port)
    hpa = resources[("HorizontalPodAutoscaler", "encore")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "encore"}
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    pdb = resources[("PodDisruptionBudget", "encore")]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert hpa["minReplicas"] > pdb["maxUnavailable"]

    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"
    )
