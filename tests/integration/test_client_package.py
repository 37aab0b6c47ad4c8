"""The encore-client wheel on its own: built from protos/, installed alone into a fresh virtualenv,
then used from that venv's python against real ``encore serve`` processes (plaintext and mutual TLS)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from loadtests.harness import ServerProcess, start_server, stop_server
from tests.e2e.test_security import pki, start_server_tls  # noqa: F401 (pki: the fixture, used by name)
from tests.support import load_build_client

REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("faiss", "faiss-cpu", "onnxruntime", "lightgbm", "numpy", "scipy", "encore")
MAX_WHEEL_BYTES = 200 * 1024

# Run by the client venv's python: argv = target [ca cert key]; prints one JSON object.
SCRIPT = """
import asyncio, json, sys
import grpc
from encore_client import TLS, AsyncClient, Client, Event, EventType

target = sys.argv[1]
tls = TLS.from_files(*sys.argv[2:5]) if len(sys.argv) > 2 else None
out = {}
with Client(target, tls=tls, deadline_s=5.0) as client:
    home = client.rank("u1", "home", limit=5)
    out["home"] = [item.item_id for item in home.items]
    out["bundle_version"] = home.bundle_version
    seed = out["home"][0]
    before = client.rank("listener-9", "now_playing", 30, seed_item_id=seed)
    played = [item.item_id for item in before.items[:3]]
    events = [Event(type=EventType.EVENT_TYPE_PLAY, item_id=i, timestamp_ms=1000 + n) for n, i in enumerate(played)]
    out["accepted"] = client.record_events("listener-9", events)
    after = client.rank("listener-9", "now_playing", 30, seed_item_id=seed)
    out["played"], out["after"], out["seed"] = played, [item.item_id for item in after.items], seed
    try:
        client.rank("u1", "now_playing")
    except grpc.RpcError as exc:
        out["error"] = [exc.code().name, exc.details()]

async def main():
    async with AsyncClient(target, tls=tls, deadline_s=5.0) as client:
        return len((await client.rank("u2", "home", limit=4)).items)

out["async_items"] = asyncio.run(main())
print(json.dumps(out))
"""


@dataclass(frozen=True)
class ClientVenv:
    wheel: Path
    staged_src: Path
    python: Path

    def run(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([str(self.python), *args], capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> ClientVenv:
    """The wheel (built as ``make client`` does) installed alone, with pip, into a fresh venv."""
    tmp = tmp_path_factory.mktemp("encore-client")
    staging = tmp / "staging"
    wheel = load_build_client().build_wheel(tmp / "dist", staging)
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True, timeout=120)
    venv = ClientVenv(wheel, staging / "src", tmp / "venv" / "bin" / "python")
    venv.run("-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel), timeout=600)
    return venv


@pytest.fixture(scope="module")
def server(tiny_bundle_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tiny_bundle_path, tmp_path_factory.mktemp("server"))
    yield proc
    stop_server(proc)


def test_the_wheel_is_small_and_pulls_only_grpcio_and_protobuf(client_venv: ClientVenv) -> None:
    assert client_venv.wheel.stat().st_size < MAX_WHEEL_BYTES
    installed = {
        p["name"].lower().replace("_", "-") for p in json.loads(client_venv.run("-m", "pip", "list", "--format=json"))
    }
    assert {"encore-client", "grpcio", "protobuf"} <= installed
    assert not installed & set(SERVER_ONLY), installed
    assert installed <= {"encore-client", "grpcio", "protobuf", "typing-extensions", "pip", "setuptools"}, installed
    requires = client_venv.run("-m", "pip", "show", "encore-client")
    assert "Requires: grpcio, protobuf" in requires and "Version: 0.1.0" in requires
    # No `encore` package: the server's distribution keeps that name to itself.
    probe = "import importlib.util as u, encore_client; print(u.find_spec('encore') is None, encore_client.PROTO_ROOT)"
    absent, proto_root = client_venv.run("-c", probe).split()
    assert absent == "True"
    assert sorted(p.name for p in Path(proto_root, "encore", "v1").glob("*.proto")) == sorted(
        p.name for p in (REPO / "protos" / "encore" / "v1").glob("*.proto")
    )


def check_session(out: dict[str, Any]) -> None:
    assert len(out["home"]) == 5 and out["bundle_version"]
    assert out["accepted"] == 3 == len(out["played"])
    assert not set(out["played"]) & set(out["after"])  # the plays were recorded: no longer recommended
    assert out["seed"] not in out["after"] and out["after"]
    code, details = out["error"]
    assert code == "INVALID_ARGUMENT" and details.startswith("seed_item_id")
    assert out["async_items"] == 4


def test_rank_and_record_events_from_the_client_venv(client_venv: ClientVenv, server: ServerProcess) -> None:
    check_session(json.loads(client_venv.run("-c", SCRIPT, server.target)))


def test_mutual_tls_from_the_client_venv(
    client_venv: ClientVenv,
    tiny_bundle_path: Path,
    tmp_path: Path,
    pki: Path,  # noqa: F811 (the imported fixture)
) -> None:
    tls_server = start_server_tls(tiny_bundle_path, tmp_path, pki, mutual=True)
    try:
        files = [str(pki / name) for name in ("ca.pem", "client.pem", "client.key")]
        check_session(json.loads(client_venv.run("-c", SCRIPT, tls_server.target, *files)))
    finally:
        stop_server(tls_server)


def test_the_helper_and_the_stubs_pass_mypy_strict(client_venv: ClientVenv) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            "",
            "--cache-dir",
            "/dev/null",
            "-p",
            "encore_client",
        ],
        cwd=client_venv.staged_src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
