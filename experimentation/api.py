"""``encore.v1.ExperimentService`` over gRPC: protos in, ``ExperimentControl`` calls, errors mapped.

Authentication: every call carries ``authorization: Bearer <token>`` (compared in constant time,
never logged) or gets UNAUTHENTICATED. Error mapping: the gate's problems and bad input →
INVALID_ARGUMENT; a lifecycle rule → FAILED_PRECONDITION (the message starts with the rule);
a concurrent commit → ABORTED; the store down → UNAVAILABLE. Every call is counted in
``encore_experiment_api_requests_total{method,code}`` (the API's availability SLI).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from prometheus_client import CollectorRegistry, Counter

from encore.v1 import experiments_pb2 as xpb
from encore.v1 import experiments_pb2_grpc as xpb_grpc
from experimentation.control import Audit, ExperimentControl, ExperimentView, GateProblems
from experimentation.generator import GateRefused
from experimentation.planner import Intent
from serving.experiments.config import ExperimentError
from serving.experiments.lifecycle import IllegalTransition, experiments_of
from serving.experiments.store import RevisionConflict, StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
Context = Any  # grpc.aio.ServicerContext (generic only in the stubs)


class BadRequest(ExperimentError):
    """A request field is missing or malformed; the message names it."""


def _json(text: str, field: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{field}: not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest(f"{field}: must be a JSON object")
    return value


def _audit(audit: xpb.Audit) -> Audit:
    if not audit.author.strip() or not audit.reason.strip():
        raise BadRequest("audit: author and reason are required (who makes the change, and why)")
    return Audit(audit.author, audit.reason, audit.base_revision)


def _intent(message: xpb.Intent) -> Intent:
    if not message.key:
        raise BadRequest("intent.key: required")
    if message.surface not in ("home", "now_playing"):
        raise BadRequest(f"intent.surface: home or now_playing, got {message.surface!r}")
    variants = {v.key: _json(v.params_json, f"intent.variants[{v.key}].params_json") for v in message.variants}
    return Intent(
        key=message.key,
        surface=message.surface,
        variants=variants,
        primary_metric=message.primary_metric,
        mde=message.mde,
        guardrails=tuple(message.guardrails),
        max_days=message.max_days,
        alpha=message.alpha or 0.05,
        power=message.power or 0.8,
    )


def _view(view: ExperimentView) -> xpb.ExperimentView:
    e = view.experiment
    return xpb.ExperimentView(
        key=str(e.get("key", "")),
        surface=str(e.get("surface", "")),
        status=str(e.get("status", "draft")),
        coverage=float(e.get("coverage", 0.0)),
        layer=view.layer,
        definition_json=json.dumps(e, sort_keys=True),
        revision=view.revision,
    )


class ExperimentApi(xpb_grpc.ExperimentServiceServicer):
    def __init__(self, control: ExperimentControl, token: str, registry: CollectorRegistry) -> None:
        self._control = control
        self._expected = f"Bearer {token}".encode()
        self._requests = Counter(
            "encore_experiment_api_requests",
            "Experimentation API calls by method and gRPC status code",
            ["method", "code"],
            registry=registry,
        )

    async def _call(self, method: str, context: Context, work: Callable[[], Awaitable[T]]) -> T:
        given = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not hmac.compare_digest(str(given).encode(), self._expected):
            log.warning("experiments api: unauthenticated %s from %s", method, context.peer())
            self._requests.labels(method, "UNAUTHENTICATED").inc()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "experiments API token required")
        code, message = grpc.StatusCode.OK, ""
        try:
            result = await work()
        except (BadRequest, ValueError, GateProblems, GateRefused) as exc:
            code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except IllegalTransition as exc:
            code, message = grpc.StatusCode.FAILED_PRECONDITION, str(exc)
        except RevisionConflict as exc:
            code, message = grpc.StatusCode.ABORTED, str(exc)
        except StoreUnavailable as exc:
            code, message = grpc.StatusCode.UNAVAILABLE, str(exc)
        self._requests.labels(method, code.name).inc()
        if code is not grpc.StatusCode.OK:
            await context.abort(code, message)
        return result

    async def Plan(self, request: xpb.PlanRequest, context: Context) -> xpb.PlanResponse:
        async def work() -> xpb.PlanResponse:
            proposal, definition = await self._control.plan(_intent(request.intent))
            lo, hi = proposal.range if proposal.range is not None else (0.0, 0.0)
            return xpb.PlanResponse(
                powered=proposal.powered,
                verdict=proposal.verdict,
                layer=proposal.layer,
                range_start=lo,
                range_end=hi,
                coverage=proposal.coverage,
                weights=list(proposal.weights),
                users_per_arm=proposal.users_per_arm,
                users_needed=proposal.users_needed,
                days=proposal.days,
                metric_source=proposal.metric.source,
                traffic_source=proposal.traffic.source,
                definition_json=json.dumps(definition, sort_keys=True),
            )

        return await self._call("Plan", context, work)

    async def Create(self, request: xpb.CreateRequest, context: Context) -> xpb.Change:
        async def work() -> xpb.Change:
            audit = _audit(request.audit)
            if request.WhichOneof("source") == "intent":
                revision, generated = await self._control.create_from_intent(_intent(request.intent), audit)
                key = str(generated.candidate.experiment.get("key"))
                return xpb.Change(
                    revision=revision.number, key=key, status="draft", generator_attempts=len(generated.refused) + 1
                )
            definition = _json(request.definition_json, "definition_json")
            if not definition:
                raise BadRequest("source: an intent or a definition_json is required")
            revision = await self._control.create_definition(definition, request.layer, audit)
            return xpb.Change(revision=revision.number, key=str(definition.get("key")), status="draft")

        return await self._call("Create", context, work)

    async def Validate(self, request: xpb.ValidateRequest, context: Context) -> xpb.ValidateResponse:
        async def work() -> xpb.ValidateResponse:
            definition = _json(request.definition_json, "definition_json")
            return xpb.ValidateResponse(problems=await self._control.validate(definition, request.layer))

        return await self._call("Validate", context, work)

    async def Start(self, request: xpb.TransitionRequest, context: Context) -> xpb.Change:
        async def work() -> xpb.Change:
            revision = await self._control.start(request.key, _audit(request.audit))
            return xpb.Change(revision=revision.number, key=request.key, status="running")

        return await self._call("Start", context, work)

    async def Ramp(self, request: xpb.RampRequest, context: Context) -> xpb.Change:
        async def work() -> xpb.Change:
            revision = await self._control.ramp(request.key, request.coverage, _audit(request.audit))
            view = await self._control.get(request.key)
            return xpb.Change(revision=revision.number, key=request.key, status=str(view.experiment.get("status")))

        return await self._call("Ramp", context, work)

    async def Stop(self, request: xpb.TransitionRequest, context: Context) -> xpb.Change:
        async def work() -> xpb.Change:
            revision = await self._control.stop(request.key, _audit(request.audit))
            return xpb.Change(revision=revision.number, key=request.key, status="stopped")

        return await self._call("Stop", context, work)

    async def Get(self, request: xpb.GetRequest, context: Context) -> xpb.ExperimentView:
        async def work() -> xpb.ExperimentView:
            return _view(await self._control.get(request.key))

        return await self._call("Get", context, work)

    async def List(self, request: xpb.ListRequest, context: Context) -> xpb.ListResponse:
        async def work() -> xpb.ListResponse:
            views, head = await self._control.experiments()
            return xpb.ListResponse(experiments=[_view(v) for v in views], revision=head)

        return await self._call("List", context, work)

    async def History(self, request: xpb.HistoryRequest, context: Context) -> xpb.HistoryResponse:
        async def work() -> xpb.HistoryResponse:
            revisions = await self._control.revisions(request.limit or 20)
            return xpb.HistoryResponse(
                revisions=[
                    xpb.RevisionInfo(
                        number=r.number,
                        author=r.author,
                        reason=r.reason,
                        committed_at=r.committed_at,
                        experiments=sum(1 for _ in experiments_of(r.document)),
                    )
                    for r in revisions
                ]
            )

        return await self._call("History", context, work)

    async def Results(self, request: xpb.ResultsRequest, context: Context) -> xpb.ResultsResponse:
        async def work() -> xpb.ResultsResponse:
            text, report = await self._control.results(request.key)
            return xpb.ResultsResponse(report_text=text, report_json=report)

        return await self._call("Results", context, work)
