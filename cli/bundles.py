"""``encore bundles list``: the bundles in a directory, newest first, with their headline metrics.

Reads only each bundle's ``manifest.json`` (``models.bundle.read_manifest``): version, created,
items, models (the default marked ``*``, the cascade's light model ``(light)``), and the served
offline evaluation's NDCG@10 / recall@100 per surface. A directory that is not a bundle is skipped;
one whose manifest is unreadable is listed with its problem. ``--json``: the same as one JSON array.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cli.exit_codes import OK, UsageError

DEFAULT_DIR = Path("bundles")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("bundles", help="list the bundles in a directory")
    bsub = b.add_subparsers(dest="bundles_command", required=True)
    ls = bsub.add_parser("list", help="version, created, models and headline metrics of every bundle, newest first")
    ls.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="parent directory of the bundles")
    ls.add_argument("--json", action="store_true", help="print the list as JSON on stdout instead of a table")
    ls.set_defaults(func=list_bundles)


def _headline(manifest: dict[str, Any], surface: str) -> dict[str, float] | None:
    served = manifest.get("evaluation", {}).get(surface, {}).get("ranker")
    if not isinstance(served, dict):
        return None
    return {k: float(served[k]) for k in ("ndcg@10", "recall@100") if isinstance(served.get(k), int | float)}


def describe(path: Path) -> dict[str, Any]:
    """One bundle's summary (``problem`` set instead when its manifest cannot be read)."""
    from models.bundle import BundleError, read_manifest

    try:
        manifest = read_manifest(path)
    except BundleError as exc:
        return {"path": str(path), "problem": str(exc)}
    default, light = manifest.get("default_model"), manifest.get("light_model")
    models = [m.get("version") for m in manifest.get("models", []) if isinstance(m, dict)]
    return {
        "path": str(path),
        "version": manifest.get("version", path.name),
        "created": manifest.get("created"),
        "items": manifest.get("n_items"),
        "dataset": manifest.get("dataset", {}).get("name"),
        "default_model": default,
        "light_model": light,
        "models": models,
        "home": _headline(manifest, "home"),
        "now_playing": _headline(manifest, "now_playing"),
    }


def _metrics(m: dict[str, float] | None) -> str:
    return "-" if not m else f"{m.get('ndcg@10', float('nan')):.3f} / {m.get('recall@100', float('nan')):.3f}"


def list_bundles(args: argparse.Namespace) -> int:
    if not args.dir.is_dir():
        raise UsageError(f"--dir {args.dir}: no such directory (build one with `encore build --out {args.dir}`)")
    candidates = [p for p in args.dir.iterdir() if p.is_dir() and (p / "manifest.json").exists()]
    rows = sorted((describe(p) for p in candidates), key=lambda r: r.get("created") or "", reverse=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return OK
    if not rows:
        print(f"no bundles in {args.dir}")
        return OK
    header = ["version", "created", "items", "models", "home ndcg@10 / recall@100", "now playing"]
    table = [header]
    for r in rows:
        if "problem" in r:
            table.append([Path(r["path"]).name, "-", "-", r["problem"], "", ""])
            continue
        names = [
            f"{m}*" if m == r["default_model"] else (f"{m} (light)" if m == r["light_model"] else str(m))
            for m in r["models"]
        ]
        created = (r["created"] or "-").replace("+00:00", "Z")
        items = "-" if r["items"] is None else f"{r['items']:,}"
        table.append([r["version"], created, items, ", ".join(names), _metrics(r["home"]), _metrics(r["now_playing"])])
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return OK
