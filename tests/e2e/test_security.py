"""TLS, mutual TLS, the token-guarded admin listener, and no secrets in logs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from encore.v1 import admin_pb2 as apb
from encore.v1 import admin_pb2_grpc as apb_grpc
from encore.v1 import ranking_pb2 as pb
from encore.v1 import ranking_pb2_grpc as pb_grpc
from loadtests.harness import ServerProcess, free_port, start_server, stop_server
from tests.support import tiny_bundle

TOKEN = "s3cret-admin-token-0123456789"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, via openssl."""
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=encore-test-ca",
        cwd=d,
    )
    for name, san in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN=encore-{name}",
            cwd=d,
        )
        (d / f"{name}.ext").write_text(san + "\n")
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            "-extfile",
            f"{name}.ext",
            cwd=d,
        )
    return d


def rank(channel: grpc.Channel) -> pb.RankResponse:
    return pb_grpc.RankingServiceStub(channel).Rank(
        pb.RankRequest(user_id="u1", surface=pb.SURFACE_HOME, limit=3), timeout=5
    )


def tls_channel(target: str, pki: Path, client_cert: bool) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / "client.key").read_bytes() if client_cert else None,
        certificate_chain=(pki / "client.pem").read_bytes() if client_cert else None,
    )
    return grpc.secure_channel(target, credentials)


def test_tls_server_answers_tls_clients_only(tiny_bundle_path: Path, tmp_path: Path, pki: Path) -> None:
    server = start_server_tls(tiny_bundle_path, tmp_path, pki, mutual=False)
    try:
        with tls_channel(server.target, pki, client_cert=False) as channel:
            assert len(rank(channel).items) == 3
        with grpc.insecure_channel(server.target) as channel, pytest.raises(grpc.RpcError) as caught:
            rank(channel)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        stop_server(server)


def test_mutual_tls_requires_a_client_certificate(tiny_bundle_path: Path, tmp_path: Path, pki: Path) -> None:
    server = start_server_tls(tiny_bundle_path, tmp_path, pki, mutual=True)
    try:
        with tls_channel(server.target, pki, client_cert=True) as channel:
            assert len(rank(channel).items) == 3
        with tls_channel(server.target, pki, client_cert=False) as channel, pytest.raises(grpc.RpcError) as caught:
            rank(channel)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        stop_server(server)


def start_server_tls(bundle: Path, tmp: Path, pki: Path, mutual: bool) -> ServerProcess:
    args = ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key")]
    if mutual:
        args += ["--tls-client-ca", str(pki / "ca.pem")]
    return start_server(bundle, tmp, *args, channel=lambda target: tls_channel(target, pki, client_cert=mutual))


@pytest.fixture
def admin_server(tiny_bundle_path: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, int, Path]]:
    second = tiny_bundle(tmp_path / "bundles", seed=2)
    current = tmp_path / "current"
    current.symlink_to(tiny_bundle_path)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    settings = tmp_path / "settings.yaml"
    settings.write_text("bundle_reload_s: 0\n")  # reload only on demand
    admin_port = free_port()
    server = start_server(
        current,
        tmp_path,
        "--config",
        str(settings),
        "--admin-port",
        str(admin_port),
        "--admin-token-file",
        str(token_file),
        "--redis-url",
        "redis://:topsecretpw@127.0.0.1:1/0",
    )
    yield server, admin_port, second
    stop_server(server)


def test_admin_needs_the_token_and_reloads_the_bundle_on_demand(admin_server: tuple[ServerProcess, int, Path]) -> None:
    server, admin_port, second = admin_server
    assert f"admin listener on 127.0.0.1:{admin_port}" in server.log()
    with grpc.insecure_channel(f"127.0.0.1:{admin_port}") as channel:
        admin = apb_grpc.AdminServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong-token-wrong-token"),)):
            with pytest.raises(grpc.RpcError) as caught:
                admin.Status(apb.StatusRequest(), metadata=metadata, timeout=5)
            assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
        auth = (("authorization", f"Bearer {TOKEN}"),)
        status = admin.Status(apb.StatusRequest(), metadata=auth, timeout=5)
        assert status.bundle_version == "tiny-0" and status.pid == server.process.pid
        assert list(status.models) == ["linear-v1", "linear-v2"]

        current = server.log_path.parent / "current"
        broken = server.log_path.parent / "broken"
        import shutil

        shutil.copytree(second, broken)
        (broken / "popularity.npy").write_bytes(b"x")
        os.replace(_link(server.log_path.parent, broken), current)
        with pytest.raises(grpc.RpcError) as caught:
            admin.Reload(apb.ReloadRequest(bundle=True), metadata=auth, timeout=60)
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert "popularity.npy" in caught.value.details()
        with grpc.insecure_channel(server.target) as serving:
            assert rank(serving).bundle_version == "tiny-0"  # still the old one

        os.replace(_link(server.log_path.parent, second), current)
        reply = admin.Reload(apb.ReloadRequest(bundle=True), metadata=auth, timeout=60)
        assert reply.bundle_reloaded and reply.bundle_version == "tiny-2"
    with grpc.insecure_channel(server.target) as serving:
        assert rank(serving).bundle_version == "tiny-2"
    log = server.log()
    assert TOKEN not in log and "topsecretpw" not in log  # no secrets in logs


def _link(parent: Path, target: Path) -> Path:
    link = parent / "current.new"
    link.symlink_to(target)
    return link


def test_admin_without_a_token_refuses_to_start(tiny_bundle_path: Path, tmp_path: Path) -> None:
    env_free = {k: v for k, v in os.environ.items() if k != "ENCORE_ADMIN_TOKEN"}
    import sys

    from tests.support import REPO

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "serve",
            "--bundle",
            str(tiny_bundle_path),
            "--port",
            "0",
            "--no-metrics",
            "--admin-port",
            "0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env_free,
    )
    assert result.returncode == 2
    assert "admin listener needs a token" in result.stderr
