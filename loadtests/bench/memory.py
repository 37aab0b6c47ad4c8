"""Resident memory of a process tree from ``/proc``: ``smaps_rollup`` and parent pids.

The parsers are pure (unit-tested on captured text); ``process_memory`` reads ``/proc`` for a root
pid and every process below it (the server and its worker processes).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """``/proc/<pid>/smaps_rollup`` as ``{field: kB}`` (only the ``Name: <n> kB`` lines)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    return fields


def memory_mib(fields: Mapping[str, int]) -> dict[str, float]:
    """Rss, Pss, private (clean + dirty) and shared (clean + dirty) in MiB from smaps_rollup kB."""
    kib = 1024.0
    return {
        "rss": fields.get("Rss", 0) / kib,
        "pss": fields.get("Pss", 0) / kib,
        "private": (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / kib,
        "shared": (fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0)) / kib,
        "swap": fields.get("Swap", 0) / kib,
    }


def parse_ppid(stat_text: str) -> int:
    """The parent pid from ``/proc/<pid>/stat`` (the command name may hold spaces and parentheses)."""
    after = stat_text[stat_text.rindex(")") + 2 :].split()
    return int(after[1])


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """Every process below ``root`` in ``{pid: ppid}``, breadth first, sorted per level."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    out: list[int] = []
    frontier = [root]
    while frontier:
        nxt: list[int] = []
        for pid in frontier:
            kids = sorted(children.get(pid, []))
            out.extend(kids)
            nxt.extend(kids)
        frontier = nxt
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and every live process below it (from each ``/proc/<pid>/stat``'s parent pid)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parents[int(entry.name)] = parse_ppid((entry / "stat").read_text())
    return [root, *descendants(root, parents)]


def process_memory(root: int) -> list[dict[str, Any]]:
    """smaps_rollup of ``root`` and all its descendants (pid, role, command, MiB figures)."""
    out: list[dict[str, Any]] = []
    for pid in process_tree(root):
        try:
            fields = parse_smaps_rollup(Path(f"/proc/{pid}/smaps_rollup").read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        out.append({"pid": pid, "role": "main" if pid == root else "child", "cmd": cmdline[:120], **memory_mib(fields)})
    return out
