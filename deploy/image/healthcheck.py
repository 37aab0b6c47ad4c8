"""The image's HEALTHCHECK: exit 0 when ``grpc.health.v1.Health/Check`` (service "") answers SERVING.

grpc_health_probe in a few lines, with the stubs of grpcio-health-checking (a dependency of
Encore). The target is ``$ENCORE_HEALTH_TARGET`` (default ``127.0.0.1:50051``), or the first
argument. Exit 1 for any other status or an RPC error, with one line on stderr.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

TIMEOUT_S = 2.0


def check(target: str, timeout: float = TIMEOUT_S) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as exc:
            print(f"healthcheck: {target}: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"healthcheck: {target}: {status}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    target = argv[1] if len(argv) > 1 else os.environ.get("ENCORE_HEALTH_TARGET", "127.0.0.1:50051")
    return check(target)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
