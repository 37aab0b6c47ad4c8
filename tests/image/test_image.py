"""The image that ``make image`` builds, run as deployed: ``--read-only`` root file system (and no
tmpfs that podman would add on its own: only the image's declared volumes are writable), a small
bundle mounted read-only at /bundles/current, an ephemeral host port. It must become SERVING, rank
over gRPC, run as uid 10001, pass its own HEALTHCHECK and drain on SIGTERM with exit code 0.

``ENCORE_IMAGE`` picks the image (default ``encore:<version from pyproject.toml>``);
``CONTAINERS_CONF`` defaults to deploy/image/containers.conf (runc, no default ulimits).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from tests.support import REPO, tiny_bundle

pytestmark = pytest.mark.image

VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGE = os.environ.get("ENCORE_IMAGE", f"encore:{VERSION}")
UID = 10001
#: Starting the container and loading the bundle; generous for a loaded CI machine.
SERVING_DEADLINE_S = 120.0
STOP_TIMEOUT_S = 20


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    conf = os.environ.get("CONTAINERS_CONF", str(REPO / "deploy" / "image" / "containers.conf"))
    env = {**os.environ, "CONTAINERS_CONF": conf}
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def inspect(container: str) -> dict[str, Any]:
    (info,) = json.loads(podman("inspect", container).stdout)
    assert isinstance(info, dict)
    return info


@dataclass(frozen=True)
class Running:
    container: str
    target: str  # 127.0.0.1:<ephemeral host port> → the container's 50051
    bundle: Path


def wait_serving(target: str, container: str, deadline: float) -> None:
    """Block until Health/Check service "" is SERVING: wait for the connection, then follow the
    server's Health/Watch stream (no polling loop, no fixed sleeps)."""
    with grpc.insecure_channel(target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=deadline - time.monotonic())
            stream = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=deadline - time.monotonic()
            )
            for reply in stream:
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    stream.cancel()
                    return
        except (grpc.FutureTimeoutError, grpc.RpcError) as exc:
            logs = podman("logs", container, check=False)
            message = f"{container} not SERVING within {SERVING_DEADLINE_S:.0f} s ({exc!r})"
            raise AssertionError(f"{message}; logs:\n{logs.stdout}{logs.stderr}") from exc
    raise AssertionError(f"{container}: the health stream ended before SERVING")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    assert podman("image", "exists", IMAGE, check=False).returncode == 0, f"no image {IMAGE}: run `make image`"
    bundle = tiny_bundle(tmp_path_factory.mktemp("bundles"))
    bundle.chmod(0o755)  # the container's uid reads it
    container = podman(
        "run", "--detach", "--read-only", "--read-only-tmpfs=false", "--cap-drop=ALL",
        "--security-opt=no-new-privileges", "--publish", "127.0.0.1::50051",
        "--volume", f"{bundle}:/bundles/current:ro", IMAGE,
    ).stdout.strip()  # fmt: skip
    try:
        port = podman("port", container, "50051/tcp").stdout.strip().splitlines()[0]
        target = f"127.0.0.1:{port.rpartition(':')[2]}"
        wait_serving(target, container, time.monotonic() + SERVING_DEADLINE_S)
        yield Running(container, target, bundle)
    finally:
        podman("rm", "--force", "--volumes", container, check=False)


def exec_in(running: Running, *command: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", running.container, *command, check=False)


def test_ranks_over_grpc(running: Running) -> None:
    manifest = json.loads((running.bundle / "manifest.json").read_text())
    rows = (running.bundle / "items.tsv").read_text(encoding="utf-8").splitlines()[1:]
    bundle_items = {row.split("\t")[0] for row in rows}
    with grpc.insecure_channel(running.target) as channel:
        stub = pb_grpc.RankingServiceStub(channel)
        reply = stub.Rank(pb.RankRequest(user_id="u3", surface=pb.SURFACE_HOME, limit=7), timeout=5)
        with pytest.raises(grpc.RpcError) as bad:
            stub.Rank(pb.RankRequest(user_id="u3", surface=pb.SURFACE_NOW_PLAYING, limit=7), timeout=5)
    assert reply.bundle_version == manifest["version"] == "tiny-0"
    assert reply.model_version == "linear-v1" and not reply.degraded
    ids = [item.item_id for item in reply.items]
    assert len(ids) == 7 == len(set(ids))
    assert [item.position for item in reply.items] == list(range(7))
    assert set(ids) <= bundle_items and len(bundle_items) == 400
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (bad.value.details() or "").startswith("seed_item_id")


def test_the_server_runs_as_a_non_root_user(running: Running) -> None:
    assert inspect(running.container)["Config"]["User"] == f"{UID}:{UID}"
    status = exec_in(running, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    gids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Gid:"))
    assert uids == [str(UID)] * 4 and gids == [str(UID)] * 4, status
    cmdline = exec_in(running, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[1:3] == ["/opt/encore/venv/bin/encore", "serve"], cmdline


def test_only_the_declared_volumes_are_writable(running: Running) -> None:
    info = inspect(running.container)
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert exec_in(running, "readlink", "/proc/1/cwd").stdout.strip() == "/var/lib/encore"
    for path in ("/opt/encore/venv/probe", "/etc/probe", "/probe", "/bundles/current/probe", "/var/tmp/probe"):
        result = exec_in(running, "touch", path)
        assert result.returncode != 0 and "Read-only file system" in result.stderr, (path, result)
    for path in ("/var/lib/encore/probe", "/tmp/probe"):
        result = exec_in(running, "touch", path)
        assert result.returncode == 0, (path, result.stderr)
    volumes = {m["Destination"] for m in info["Mounts"]}
    assert volumes >= {"/var/lib/encore", "/tmp", "/bundles/current"}, volumes


def test_the_image_healthcheck_probes_grpc_health(running: Running) -> None:
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", IMAGE).stdout)
    assert config["Test"][-1] == "/opt/encore/healthcheck.py", config
    result = podman("healthcheck", "run", running.container, check=False)
    assert result.returncode == 0, result
    wrong_port = exec_in(running, "python", "/opt/encore/healthcheck.py", "127.0.0.1:1")
    assert wrong_port.returncode == 1 and "UNAVAILABLE" in wrong_port.stderr, wrong_port


def test_the_kubernetes_deployment_fits_the_image() -> None:
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", IMAGE).stdout)
    kubernetes = REPO / "deploy" / "kubernetes"
    deployment = yaml.safe_load((kubernetes / "deployment.yaml").read_text())
    kustomization = yaml.safe_load((kubernetes / "kustomization.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"encore:{VERSION}"
    assert {"name": "encore", "newTag": VERSION} in kustomization["images"]
    assert config["User"] == f"{container['securityContext']['runAsUser']}:{container['securityContext']['runAsGroup']}"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["workingDir"] == config["WorkingDir"] == "/var/lib/encore"
    assert container["command"] == config["Entrypoint"] == ["encore"]
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert set(config["Volumes"]) == {"/var/lib/encore", "/tmp"} <= writable
    # the image's default bundle path is the one the deployment serves, under its read-only mount
    image_bundle = config["Cmd"][config["Cmd"].index("--bundle") + 1]
    assert container["args"][container["args"].index("--bundle") + 1] == image_bundle == "/bundles/current"
    (bundles,) = [m for m in container["volumeMounts"] if image_bundle.startswith(m["mountPath"] + "/")]
    assert bundles["readOnly"] is True


def test_sigterm_drains_and_exits_zero(running: Running) -> None:
    """Last in this module: stops the container. The server is PID 1 and handles SIGTERM itself
    (health NOT_SERVING, drain); an ignored signal would end in SIGKILL after the timeout (137)."""
    started = time.monotonic()
    podman("stop", "--time", str(STOP_TIMEOUT_S), running.container, timeout=STOP_TIMEOUT_S + 30)
    elapsed = time.monotonic() - started
    state = inspect(running.container)["State"]
    assert state["ExitCode"] == 0, (state, podman("logs", running.container, check=False).stderr[-2000:])
    assert elapsed < STOP_TIMEOUT_S, elapsed
