"""``encore captures show``: captured Rank exchanges (``serving.capture`` files) in readable form.

One block per exchange: arrival time (UTC), status, server latency, the request (user, surface,
seed, limit, request id), the response's bundle/model versions, assignments and degraded stages,
and its items with scores. ``--limit`` stops early; ``--json`` prints one JSON object per exchange
(protobuf's JSON mapping) per line instead.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from cli.exit_codes import OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    c = sub.add_parser("captures", help="read captured traffic files")
    csub = c.add_subparsers(dest="captures_command", required=True)
    show = csub.add_parser("show", help="print captured Rank exchanges in readable form")
    show.add_argument("paths", type=Path, nargs="+", help="capture files or directories")
    show.add_argument("--limit", type=int, default=0, help="stop after this many exchanges (0: all)")
    show.add_argument("--items", type=int, default=10, help="items shown per response")
    show.add_argument("--json", action="store_true", help="one JSON object per exchange per line instead of text")
    show.set_defaults(func=show_captures)


def show_captures(args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from encore.v1 import ranking_pb2 as pb
    from serving.capture import read_captures

    shown = 0
    for captured in read_captures(args.paths):
        if args.limit and shown >= args.limit:
            break
        shown += 1
        if args.json:
            print(json.dumps(MessageToDict(captured, preserving_proto_field_name=True), separators=(",", ":")))
            continue
        request, response = captured.request, captured.response
        when = datetime.fromtimestamp(captured.ts_ms / 1000, UTC).isoformat(timespec="milliseconds")
        print(f"{when}  {captured.status}  {captured.server_latency_ms:.1f} ms  request {request.request_id}")
        surface = pb.Surface.Name(request.surface)
        seed = f"  seed {request.seed_item_id}" if request.seed_item_id else ""
        print(f"  user {request.user_id}  {surface.removeprefix('SURFACE_').lower()}{seed}  limit {request.limit}")
        if captured.status == "OK":
            assigned = ", ".join(f"{a.experiment}={a.variant}" for a in response.assignments) or "none"
            degraded = ", ".join(response.degraded) or "none"
            print(
                f"  bundle {response.bundle_version}  model {response.model_version}  "
                f"experiments {assigned}  degraded {degraded}"
            )
            for position, item in enumerate(response.items[: args.items], start=1):
                print(f"  {position:3d}. {item.item_id:<28} {item.score:9.4f}")
            if len(response.items) > args.items:
                print(f"  ... {len(response.items) - args.items} more")
        print()
    if not args.json:
        print(f"{shown} exchange{'s' if shown != 1 else ''}")
    return OK
