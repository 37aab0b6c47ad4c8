"""``encore experiments serve | plan | create | start | ramp | stop | list | show`` (and the API side
of ``validate --definition`` and ``history``): the
experimentation API (``experimentation``) and a client for it, with readable tables and ``--json``.

The client reads its token from ``--token-file`` or ``ENCORE_EXPERIMENTS_TOKEN`` and talks TLS when
``--tls-ca`` is given. A refused call prints ``CODE: message`` on stderr and exits 1
(FAILED_PRECONDITION names the lifecycle rule; INVALID_ARGUMENT lists the gate's problems).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.connect import bearer, channel, raise_if_unreachable
from cli.exit_codes import FAILED, OK

TOKEN_ENV = "ENCORE_EXPERIMENTS_TOKEN"


def add_parsers(esub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = esub.add_parser("serve", help="serve the experimentation API (its own process)")
    s.add_argument("--store", required=True, help="the experiments store: file:///dir or redis[s]://…")
    s.add_argument("--bundle", type=Path, required=True, help="the bundle the servers run (its model versions)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=50060)
    s.add_argument("--metrics-port", type=int, help="Prometheus metrics (the API's SLIs)")
    s.add_argument("--token-file", type=Path, help=f"API token file (default: {TOKEN_ENV})")
    s.add_argument("--tls-cert", type=Path)
    s.add_argument("--tls-key", type=Path)
    s.add_argument("--exposures", type=Path, nargs="*", default=[], help="exposure logs (traffic, results)")
    s.add_argument("--outcomes", type=Path, nargs="*", default=[], help="outcome logs (metric variance, results)")
    s.add_argument("--users-per-day", type=float, help="traffic per surface when the exposure logs say nothing")
    s.set_defaults(func=serve)

    def client(name: str, help_text: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = esub.add_parser(name, help=help_text)
        add_client_options(p)
        p.set_defaults(func=func)
        return p

    def audited(p: argparse.ArgumentParser) -> None:
        p.add_argument("--author", required=True, help="who makes the change")
        p.add_argument("--reason", required=True, help="why")
        p.add_argument("--base", type=int, default=0, help="the revision this change is based on (default: head)")

    def intent(p: argparse.ArgumentParser) -> None:
        p.add_argument("key")
        p.add_argument("--surface", required=True, choices=["home", "now_playing"])
        p.add_argument(
            "--variant",
            action="append",
            required=True,
            metavar="KEY[=PARAMS_JSON]",
            help='repeat: the first is the control, e.g. --variant control --variant lite=\'{"model_version": "x"}\'',
        )
        p.add_argument("--metric", required=True, help="the primary metric")
        p.add_argument("--mde", type=float, required=True, help="minimum detectable effect, relative (0.02 = 2 %%)")
        p.add_argument("--guardrail", action="append", default=[], help="repeat: guardrail metrics")
        p.add_argument("--max-days", type=float, required=True)

    intent(client("plan", "plan an experiment: coverage, range, sample size, duration", plan))
    c = client("create", "create a draft from an intent (planned, generated, gated) or a definition", create)
    c.add_argument("--definition", type=Path, help="an experiment (YAML or JSON mapping) instead of an intent")
    c.add_argument("--layer", default="", help="with --definition: its layer")
    c.add_argument("key", nargs="?")
    c.add_argument("--surface", choices=["home", "now_playing"])
    c.add_argument("--variant", action="append", default=[], metavar="KEY[=PARAMS_JSON]")
    c.add_argument("--metric")
    c.add_argument("--mde", type=float)
    c.add_argument("--guardrail", action="append", default=[])
    c.add_argument("--max-days", type=float)
    audited(c)
    for name, func in (("start", start), ("stop", stop)):
        p = client(name, f"{name} an experiment", func)
        p.add_argument("key")
        audited(p)
    r = client("ramp", "change an experiment's coverage (never moves an assigned user)", ramp)
    r.add_argument("key")
    r.add_argument("coverage", type=float)
    audited(r)
    client("list", "every experiment of the head revision", list_experiments)
    sh = client("show", "one experiment", show)
    sh.add_argument("key")


def add_client_options(p: argparse.ArgumentParser) -> None:
    """``--target``, ``--token-file``, ``--tls-ca``, ``--json``, ``--timeout`` of an API client command."""
    p.add_argument("--target", default="127.0.0.1:50060", help="the experimentation API")
    p.add_argument("--token-file", type=Path, help=f"API token file (default: {TOKEN_ENV})")
    p.add_argument("--tls-ca", type=Path, help="CA certificate: talk TLS")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(tls_key=None, tls_cert=None)


def add_gate_options(p: argparse.ArgumentParser) -> None:
    """``validate --definition FILE [--layer L]``: one experiment through the API's gate."""
    p.add_argument("--definition", type=Path, help="one experiment (YAML/JSON mapping): check it with the API's gate")
    p.add_argument("--layer", default="", help="with --definition: its layer")
    add_client_options(p)


def validate_definition(args: argparse.Namespace) -> int:
    import yaml

    from encore.v1 import experiments_pb2 as xpb
    from serving.experiments.store import json_document

    definition = json_document(yaml.safe_load(args.definition.read_text(encoding="utf-8")))
    reply = _call(args, "Validate", xpb.ValidateRequest(definition_json=json.dumps(definition), layer=args.layer))
    if reply is None:
        return FAILED
    if args.json:
        return _print(args, reply, "")
    if reply.problems:
        print(f"{args.definition}: {len(reply.problems)} problem(s)")
        for problem in reply.problems:
            print(f"  {problem}")
        return FAILED
    print(f"{args.definition}: passes the gate")
    return OK


def serve(args: argparse.Namespace) -> int:
    import asyncio

    from experimentation.server import ServiceConfig, serve_experiments

    config = ServiceConfig(
        store=args.store,
        bundle=args.bundle,
        host=args.host,
        port=args.port,
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        exposures=tuple(args.exposures),
        outcomes=tuple(args.outcomes),
        users_per_day=args.users_per_day,
        metrics_port=args.metrics_port,
    )
    asyncio.run(serve_experiments(config))
    return OK


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    """One RPC; ``None`` (with the error on stderr) when the API refused it."""
    import grpc

    from encore.v1 import experiments_pb2_grpc as xpb_grpc

    metadata = bearer(args.token_file, TOKEN_ENV)
    with channel(args) as ch:
        stub = xpb_grpc.ExperimentServiceStub(ch)
        try:
            return getattr(stub, method)(request, metadata=metadata, timeout=args.timeout)
        except grpc.RpcError as exc:
            raise_if_unreachable(exc, ch, args.target)
            print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
            return None


def _print(args: argparse.Namespace, message: Any, text: str) -> int:
    if message is None:
        return FAILED
    if args.json:
        from google.protobuf.json_format import MessageToDict

        print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), indent=2))
    else:
        print(text)
    return OK


def _intent(args: argparse.Namespace) -> Any:
    from encore.v1 import experiments_pb2 as xpb

    variants = []
    for spec in args.variant:
        key, _, params = spec.partition("=")
        variants.append(xpb.VariantIntent(key=key, params_json=params))
    return xpb.Intent(
        key=args.key,
        surface=args.surface or "",
        variants=variants,
        primary_metric=args.metric or "",
        mde=args.mde or 0.0,
        guardrails=args.guardrail,
        max_days=args.max_days or 0.0,
    )


def _audit(args: argparse.Namespace) -> Any:
    from encore.v1 import experiments_pb2 as xpb

    return xpb.Audit(author=args.author, reason=args.reason, base_revision=args.base)


def plan(args: argparse.Namespace) -> int:
    from encore.v1 import experiments_pb2 as xpb

    p = _call(args, "Plan", xpb.PlanRequest(intent=_intent(args)))
    if p is None:
        return FAILED
    text = "\n".join(
        [
            p.verdict,
            f"  layer {p.layer}, range [{p.range_start:.2f}, {p.range_end:.2f}), coverage {p.coverage:g}, "
            f"weights {', '.join(f'{w:g}' for w in p.weights)}",
            f"  {p.users_per_arm:,} users per arm, {p.users_needed:,} in all, {p.days:.1f} days",
            f"  metric: {p.metric_source}; traffic: {p.traffic_source}",
        ]
    )
    return _print(args, p, text)


def create(args: argparse.Namespace) -> int:
    from encore.v1 import experiments_pb2 as xpb

    if args.definition is not None:
        import yaml

        from serving.experiments.store import json_document

        definition = json_document(yaml.safe_load(args.definition.read_text(encoding="utf-8")))
        request = xpb.CreateRequest(audit=_audit(args), definition_json=json.dumps(definition), layer=args.layer)
    else:
        if not args.key:
            raise SystemExit("key: required (or --definition FILE)")
        request = xpb.CreateRequest(audit=_audit(args), intent=_intent(args))
    change = _call(args, "Create", request)
    text = "" if change is None else f"revision {change.revision}: {change.key} created as a {change.status}"
    return _print(args, change, text)


def _transition(args: argparse.Namespace, method: str, request: Any) -> int:
    change = _call(args, method, request)
    text = "" if change is None else f"revision {change.revision}: {change.key} is {change.status}"
    return _print(args, change, text)


def start(args: argparse.Namespace) -> int:
    from encore.v1 import experiments_pb2 as xpb

    return _transition(args, "Start", xpb.TransitionRequest(key=args.key, audit=_audit(args)))


def stop(args: argparse.Namespace) -> int:
    from encore.v1 import experiments_pb2 as xpb

    return _transition(args, "Stop", xpb.TransitionRequest(key=args.key, audit=_audit(args)))


def ramp(args: argparse.Namespace) -> int:
    from encore.v1 import experiments_pb2 as xpb

    return _transition(args, "Ramp", xpb.RampRequest(key=args.key, coverage=args.coverage, audit=_audit(args)))


def list_experiments(args: argparse.Namespace) -> int:
    from encore.v1 import experiments_pb2 as xpb

    reply = _call(args, "List", xpb.ListRequest())
    if reply is None:
        return FAILED
    lines = [f"revision {reply.revision}", f"{'key':<24} {'surface':<12} {'status':<8} {'coverage':>8}  layer"]
    lines += [f"{e.key:<24} {e.surface:<12} {e.status:<8} {e.coverage:>8.2f}  {e.layer}" for e in reply.experiments]
    return _print(args, reply, "\n".join(lines))


def show(args: argparse.Namespace) -> int:
    from encore.v1 import experiments_pb2 as xpb

    view = _call(args, "Get", xpb.GetRequest(key=args.key))
    text = "" if view is None else json.dumps(json.loads(view.definition_json), indent=2)
    return _print(args, view, text)


def log_revisions(args: argparse.Namespace) -> int:
    import datetime as dt

    from encore.v1 import experiments_pb2 as xpb

    reply = _call(args, "History", xpb.HistoryRequest(limit=args.limit))
    if reply is None:
        return FAILED
    lines = [f"{'rev':>5}  {'committed (UTC)':<25}  {'author':<16}  {'exps':>4}  reason"]
    for r in reply.revisions:
        when = dt.datetime.fromtimestamp(r.committed_at, dt.UTC).isoformat(timespec="seconds")
        lines.append(f"{r.number:>5}  {when:<25}  {r.author:<16}  {r.experiments:>4}  {r.reason}")
    return _print(args, reply, "\n".join(lines))
