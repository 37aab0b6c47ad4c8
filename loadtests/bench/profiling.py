"""Sampling the server with py-spy and collapsing its stacks into busy threads and top frames.

``top_frames`` is pure (unit-tested on collapsed stacks); ``profile_server`` runs ``py-spy record``
(not a project dependency: on PATH or in the venv) against a pid and its subprocesses.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Where a waiting (not working) thread's deepest Python frame or native leaf stops. py-spy's own
#: idle detection is unreliable in containers, so idle samples are recognised by these.
IDLE_PYTHON_FRAMES = (
    "EpollSelector.select (",
    "Condition.wait (",
    "Event.wait (",
    "Thread._wait_for_tstate_lock (",
    "_worker (concurrent/futures/thread.py:81)",  # ThreadPoolExecutor worker: work_queue.get(block=True)
    "SimpleQueue.get (",
    "Queue.get (",
    "BaseServer.serve_forever (",  # prometheus_client's HTTP thread
    "_PollLikeSelector.select (",
    "_poll_wrapper (",
)
IDLE_NATIVE_LEAVES = ("epoll_wait", "epoll_pwait", "poll (", "pthread_cond_", "sem_wait", "sem_timedwait", "futex")
PROJECT_PACKAGES = ("cli/", "common/", "serving/", "offline/", "ranking/", "features/", "models/", "loadtests/")
#: The entry point's frames are on every main-thread sample; left out of "total".
ENTRY_FILES = ("cli/",)


#: Threads that block inside C under ``Thread.run`` (grpc's cython poller): idle when that is the leaf.
IDLE_C_THREADS = ("(_poll_wrapper)", "(serve_forever)")


def _is_idle(frames: Sequence[str], thread: str = "-") -> bool:
    if frames[-1].startswith("Thread.run (") and thread.endswith(IDLE_C_THREADS):
        return True
    if any(marker in frames[-1] for marker in IDLE_NATIVE_LEAVES):
        return True
    python = [f for f in frames if _frame_file(f).endswith(".py")]
    return bool(python) and any(python[-1].startswith(marker) for marker in IDLE_PYTHON_FRAMES)


def _split_stack(stack: str) -> tuple[str, list[str]]:
    """(thread label, frames root first) of one collapsed py-spy stack."""
    frames = [f for f in stack.split(";") if f]
    thread = "-"
    while frames and (frames[0].startswith("process ") or frames[0].startswith("thread (")):
        head = frames.pop(0)
        if head.startswith("thread ("):
            label = head.split(": ", 1)[1] if ": " in head else head
            thread = label.rstrip("0123456789").rstrip("_-") or label
    return thread, frames


def top_frames(collapsed: str, n: int = 15) -> dict[str, Any]:
    """Summarise py-spy ``--format raw`` output (collapsed stacks, optionally with ``--threads``).

    Samples whose leaf is a wait (``IDLE_LEAVES``) are idle. Returns the busy share, busy samples
    per thread (digits stripped, so the executor's threads add up), the top ``n`` leaf frames of
    busy samples ("self"), and the top ``n`` project frames (``PROJECT_PACKAGES``) by the share of
    busy samples they are on the stack of ("total"). Shares are of busy samples; line numbers are
    dropped from names so a function counts once.
    """
    self_counts: Counter[str] = Counter()
    total_counts: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    samples = busy = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread, frames = _split_stack(stack)
        if not frames:
            continue
        samples += count
        if _is_idle(frames, thread):
            continue
        busy += count
        threads[thread] += count
        self_counts[_frame_name(frames[-1])] += count
        project = {_frame_name(f) for f in frames if _frame_file(f).startswith(PROJECT_PACKAGES)}
        for name in project:
            if not _frame_file(name).startswith(ENTRY_FILES):
                total_counts[name] += count
    share = (lambda c: c / busy) if busy else (lambda c: 0.0)
    return {
        "samples": samples,
        "busy_share": busy / samples if samples else 0.0,
        "threads": [(t, share(c)) for t, c in threads.most_common()],
        "self": [(f, share(c)) for f, c in self_counts.most_common(n)],
        "total": [(f, share(c)) for f, c in total_counts.most_common(n)],
    }


def _frame_file(frame: str) -> str:
    _, sep, where = frame.partition(" (")
    return where.rstrip(")").rsplit(":", 1)[0] if sep else ""


def _frame_name(frame: str) -> str:
    name, sep, _ = frame.partition(" (")
    if not sep:
        return frame.strip()
    file = _frame_file(frame)
    return f"{name} ({file})" if file else name


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.is_file() else None


def profile_server(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """Sample the server (and its worker processes) with py-spy; top frames by self and total share."""
    binary = _py_spy()
    if binary is None:
        return {"error": "py-spy not found (pip install py-spy; it is not a project dependency)"}
    base = [binary, "record", "--pid", str(pid), "--duration", f"{int(seconds)}", "--rate", "100"]
    base += ["--format", "raw", "--subprocesses", "--threads", "-o", str(out)]
    attempts = [base]
    errors: list[str] = []
    for cmd in attempts:
        completed = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        if completed.returncode == 0 and out.is_file() and out.stat().st_size > 0:
            frames = top_frames(out.read_text(encoding="utf-8", errors="replace"))
            return {"native": "--native" in cmd, "file": str(out), **frames}
        errors.append(completed.stderr.strip()[-500:])
    return {"error": "py-spy failed: " + " | ".join(errors)}
