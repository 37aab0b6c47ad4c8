"""``encore rank``: rank for a user against a running server and print a table."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cli.connect import channel, raise_if_unreachable
from cli.exit_codes import FAILED, OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("rank", help="rank for a user against a running server and print a table")
    r.add_argument("--user-id", required=True)
    r.add_argument("--surface", choices=["home", "now_playing"], default="home")
    r.add_argument("--seed-item-id")
    r.add_argument("--limit", type=int, default=0)
    r.add_argument("--target", default="127.0.0.1:50051")
    r.add_argument("--timeout", type=float, default=2.0, help="deadline in seconds")
    r.add_argument("--tls-ca", type=Path, help="PEM CA to verify the server (enables TLS)")
    r.add_argument("--tls-cert", type=Path, help="client certificate (mutual TLS)")
    r.add_argument("--tls-key", type=Path, help="client private key (mutual TLS)")
    r.add_argument("--json", action="store_true", help="print the response as JSON on stdout instead of a table")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import grpc

    from encore.v1 import ranking_pb2 as pb
    from encore.v1 import ranking_pb2_grpc as pb_grpc

    surface = {"home": pb.SURFACE_HOME, "now_playing": pb.SURFACE_NOW_PLAYING}[args.surface]
    request = pb.RankRequest(
        user_id=args.user_id, surface=surface, seed_item_id=args.seed_item_id or "", limit=args.limit, debug=True
    )
    with channel(args) as ch:
        stub = pb_grpc.RankingServiceStub(ch)
        started = time.perf_counter()
        try:
            response = stub.Rank(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            raise_if_unreachable(exc, ch, args.target)
            print(f"encore rank: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return FAILED
        elapsed_ms = (time.perf_counter() - started) * 1000
    if args.json:
        from google.protobuf.json_format import MessageToDict

        body = MessageToDict(response, preserving_proto_field_name=True)
        print(json.dumps({**body, "client_ms": round(elapsed_ms, 3)}, indent=2))
        return OK
    print(
        f"request {response.request_id}  bundle {response.bundle_version}  model {response.model_version or '-'}"
        f"  {elapsed_ms:.1f} ms"
    )
    if response.assignments:
        print("experiments: " + ", ".join(f"{a.experiment}={a.variant}" for a in response.assignments))
    if response.degraded:
        print("DEGRADED: " + ", ".join(response.degraded))
    print(f"{'pos':>3}  {'item_id':<24} {'score':>9}  source")
    for item in response.items:
        print(f"{item.position:>3}  {item.item_id:<24} {item.score:>9.4f}  {item.source}")
    if response.timings:
        print("stages: " + "  ".join(f"{t.stage}={t.milliseconds:.2f}ms" for t in response.timings))
    return OK
