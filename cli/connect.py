"""Client channels and call metadata for the commands that talk to a running server (``rank``, ``admin``,
the experiments API client)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cli.exit_codes import TargetUnreachable

if TYPE_CHECKING:
    import grpc

#: How long a failed RPC's channel gets to show it is connected before the target counts as unreachable.
READY_PROBE_S = 0.5


def channel(args: argparse.Namespace) -> grpc.Channel:
    """Plaintext, or TLS when ``--tls-ca`` is given (plus a client certificate for mutual TLS)."""
    import grpc

    if getattr(args, "tls_ca", None) is None:
        return grpc.insecure_channel(args.target)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=args.tls_ca.read_bytes(),
        private_key=args.tls_key.read_bytes() if args.tls_key else None,
        certificate_chain=args.tls_cert.read_bytes() if args.tls_cert else None,
    )
    return grpc.secure_channel(args.target, credentials)


def bearer(token_file: Path | None, env: str) -> tuple[tuple[str, str], ...]:
    """Call metadata ``authorization: Bearer <token>``, the token from ``token_file`` or ``env``."""
    token = token_file.read_text(encoding="utf-8").strip() if token_file else os.environ.get(env, "")
    return (("authorization", f"Bearer {token}"),)


def raise_if_unreachable(exc: grpc.RpcError, ch: grpc.Channel, target: str) -> None:
    """``TargetUnreachable`` when an RPC failed because no connection to ``target`` exists.

    A server that answered UNAVAILABLE or ran out of time leaves a connected channel: that is the
    server's answer, not an unreachable target, and the caller reports it.
    """
    import grpc

    code = exc.code()
    if code not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return
    try:
        grpc.channel_ready_future(ch).result(timeout=READY_PROBE_S)
    except grpc.FutureTimeoutError:
        raise TargetUnreachable(f"{target}: unreachable ({code.name}: {exc.details()})") from None
