"""CPU time of a process tree from ``/proc/<pid>/stat``: user + system time of the root and of every
process below it (the server and its workers), so a run reads it before and after and takes the
difference. ``parse_cpu_ticks`` is pure (unit-tested on captured text)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from loadtests.bench.memory import process_tree

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def parse_cpu_ticks(stat_text: str) -> int:
    """utime + stime (fields 14 and 15, in clock ticks) of ``/proc/<pid>/stat``; the command name
    (field 2) may hold spaces and parentheses, so fields are counted after its last ``)``."""
    after = stat_text[stat_text.rindex(")") + 2 :].split()  # after[0] is field 3 (state)
    return int(after[14 - 3]) + int(after[15 - 3])


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each of ``pids`` still alive (all its threads)."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[pid] = parse_cpu_ticks(Path(f"/proc/{pid}/stat").read_text()) / CLOCK_TICKS_PER_S
    return out


def tree_cpu_seconds(root: int) -> dict[int, float]:
    """CPU seconds used so far by ``root`` and each process below it, by pid."""
    return cpu_seconds(process_tree(root))


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    """CPU seconds used between two readings, per pid present in ``after`` (a new pid counts from 0)."""
    return {pid: seconds - before.get(pid, 0.0) for pid, seconds in after.items()}
