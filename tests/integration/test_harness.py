"""The process launcher every test layer and the benchmark share (``loadtests.harness``)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from loadtests.harness import RedisProcess, free_port, stop_process


def test_free_port_can_be_bound_next() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_redis_process_answers_ping_until_stopped() -> None:
    redis = RedisProcess()
    redis.start()
    try:
        assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
        with socket.create_connection(("127.0.0.1", redis.port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            assert s.recv(16).startswith(b"+PONG")
        process = redis.process
        assert process is not None
    finally:
        redis.stop()
    assert process.returncode == -signal.SIGKILL
    assert redis.process is None


def test_a_redis_that_cannot_bind_its_port_fails_at_once_not_at_the_deadline() -> None:
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        redis = RedisProcess(port=busy.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="exited with"):
            redis.start()
        assert time.monotonic() - started < 8.0  # the start-up deadline is 10 s
        assert redis.process is None  # cleaned up


def test_stop_process_escalates_to_sigkill_when_sigterm_is_ignored() -> None:
    script = "\n".join(
        [
            "import signal, time",
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
            "print('ready', flush=True)",
            "time.sleep(60)",
        ]
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"  # handler installed
        stop_process(process, grace_s=0.5)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
