"""The admin listener: ``encore.v1.AdminService`` (Status, Reload) behind a bearer token.

It is a separate gRPC server bound to ``admin_host`` (loopback by default) so admin operations
are never reachable on the serving port. Every call must carry ``authorization: Bearer <token>``;
the token comes from ``admin_token_file`` or ``ENCORE_ADMIN_TOKEN``, is compared in constant time
and is never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
import time

import grpc

from encore.v1 import admin_pb2 as apb
from encore.v1 import admin_pb2_grpc as apb_grpc
from serving.app import EncoreApp
from serving.config import Settings
from serving.listen import add_port
from serving.tokens import read_token

log = logging.getLogger(__name__)

TOKEN_ENV = "ENCORE_ADMIN_TOKEN"


def admin_token(settings: Settings) -> str:
    """The configured token; ``ConfigError`` when the admin listener is on without one."""
    return read_token(
        settings.admin_token_file,
        TOKEN_ENV,
        setting="admin_port",
        file_setting="admin_token_file",
        what="the admin listener",
    )


class AdminServicer(apb_grpc.AdminServiceServicer):
    def __init__(self, app: EncoreApp, token: str) -> None:
        self._app = app
        self._expected = f"Bearer {token}".encode()

    async def _authorize(self, context: grpc.aio.ServicerContext) -> None:  # type: ignore[type-arg]
        given = dict(context.invocation_metadata() or ()).get("authorization", "")
        if not hmac.compare_digest(str(given).encode(), self._expected):
            log.warning("admin: unauthenticated call from %s", context.peer())
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "admin token required")

    async def Status(self, request: apb.StatusRequest, context: grpc.aio.ServicerContext) -> apb.StatusResponse:  # type: ignore[type-arg]
        await self._authorize(context)
        app = self._app
        bundle = app.bundle
        experiments = app.experiments
        follower = app.store_follower
        return apb.StatusResponse(
            bundle_version=bundle.version,
            default_model=bundle.default_model,
            models=sorted(bundle.models),
            experiments=0 if experiments is None else len(experiments.all_experiments),
            experiments_source=str(app.settings.experiments or app.settings.experiments_store or ""),
            uptime_seconds=time.monotonic() - app.started_at,
            in_flight=app.admission.in_flight,
            pid=os.getpid(),
            experiments_revision=follower.revision if follower is not None else 0,
            experiments_store_up=follower is not None and follower.reachable,
        )

    async def Reload(self, request: apb.ReloadRequest, context: grpc.aio.ServicerContext) -> apb.ReloadResponse:  # type: ignore[type-arg]
        await self._authorize(context)
        app = self._app
        problems: list[str] = []
        bundle_done = experiments_done = False
        if request.experiments:
            if app.reloader is None:
                problems.append("experiments: the server was started without --experiments")
            else:
                experiments_done = await app.reloader.reload_now() is True
                if not experiments_done:
                    problems.append(f"experiments refused: {app.reloader.last_error}")
        if request.bundle and app.bundle_reloader is not None:
            bundle_done = await app.bundle_reloader.reload_now() is True
            if not bundle_done:
                problems.append(f"bundle refused: {app.bundle_reloader.last_error}")
        if problems:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "; ".join(problems))
        log.info("admin: reload (bundle=%s, experiments=%s) done", request.bundle, request.experiments)
        return apb.ReloadResponse(
            bundle_version=app.bundle.version,
            bundle_reloaded=bundle_done,
            experiments_reloaded=experiments_done,
            message="ok",
        )


async def create_admin_server(app: EncoreApp, token: str) -> tuple[grpc.aio.Server, int]:
    """The admin server bound to ``admin_host:admin_port`` (not started)."""
    settings = app.settings
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 10)])
    apb_grpc.add_AdminServiceServicer_to_server(AdminServicer(app, token), server)
    return server, add_port(server, settings.admin_host, settings.admin_port or 0, setting="admin_port")
