"""``encore admin``: status or reload through the admin listener."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from cli.connect import bearer, raise_if_unreachable
from cli.exit_codes import FAILED, OK

if TYPE_CHECKING:
    from google.protobuf.message import Message


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("admin", help="status or reload through the admin listener")
    a.add_argument("action", choices=["status", "reload"])
    a.add_argument("--target", default="127.0.0.1:50052")
    a.add_argument("--token-file", type=Path, help="admin token file (default: ENCORE_ADMIN_TOKEN)")
    a.add_argument("--bundle", action="store_true", help="reload: only the bundle")
    a.add_argument("--experiments", action="store_true", help="reload: only the experiments file")
    a.add_argument("--timeout", type=float, default=120.0)
    a.add_argument("--json", action="store_true", help="print the reply as JSON on stdout instead of text")
    a.set_defaults(func=run)


def _render(message: Message, as_json: bool) -> str:
    if not as_json:
        return str(message)
    from google.protobuf.json_format import MessageToJson

    return MessageToJson(message, preserving_proto_field_name=True, indent=2)


def run(args: argparse.Namespace) -> int:
    import grpc

    from encore.v1 import admin_pb2 as apb
    from encore.v1 import admin_pb2_grpc as apb_grpc

    metadata = bearer(args.token_file, "ENCORE_ADMIN_TOKEN")
    with grpc.insecure_channel(args.target) as channel:
        stub = apb_grpc.AdminServiceStub(channel)
        try:
            if args.action == "status":
                status = stub.Status(apb.StatusRequest(), metadata=metadata, timeout=args.timeout)
                print(_render(status, args.json))
            else:
                both = not (args.bundle or args.experiments)
                reply = stub.Reload(
                    apb.ReloadRequest(bundle=args.bundle or both, experiments=args.experiments or both),
                    metadata=metadata,
                    timeout=args.timeout,
                )
                print(_render(reply, args.json))
        except grpc.RpcError as exc:
            raise_if_unreachable(exc, channel, args.target)
            print(f"encore admin {args.action}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return FAILED
    return OK
