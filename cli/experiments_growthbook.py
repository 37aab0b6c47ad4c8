"""``encore experiments growthbook-export | growthbook-import``: the experiments config as a GrowthBook
SDK payload and back (``experimentation.growthbook`` states the mapping and its differences).

A bad file or payload ends the command with exit 2 and one line naming the field.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Any

from cli.exit_codes import OK


def add_parsers(esub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ex = esub.add_parser(
        "growthbook-export",
        help="write the experiments config as a GrowthBook SDK payload (features + an encore section)",
    )
    source = ex.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiments", type=Path, help="an experiments YAML file")
    source.add_argument("--store", help="the experiments store (file:///dir or redis[s]://…): its head revision")
    ex.add_argument("--at", type=_timestamp, help="assign as at this ISO-8601 time with a timezone (default: now)")
    ex.add_argument("--out", type=Path, help="default: standard output")
    ex.set_defaults(func=export_growthbook)
    im = esub.add_parser("growthbook-import", help="turn a GrowthBook SDK payload (JSON) into an experiments YAML file")
    im.add_argument("file", type=Path, help="the payload growthbook-export wrote (or one of the same form)")
    im.add_argument("--out", type=Path, help="the experiments YAML to write (default: standard output)")
    im.set_defaults(func=import_growthbook)


def _timestamp(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"must be an ISO-8601 time with a timezone, got {text!r}")
    return value


def _write(text: str, out: Path | None) -> None:
    if out is None:
        print(text, end="")
    else:
        out.write_text(text, encoding="utf-8")


def export_growthbook(args: argparse.Namespace) -> int:
    import json

    from experimentation.growthbook import export_payload
    from serving.experiments.config import ExperimentsConfig, load_experiments, parse_experiments

    config: ExperimentsConfig
    if args.experiments is not None:
        config = load_experiments(args.experiments)
    else:
        config = parse_experiments(_store_head(args.store), args.store)
    payload = export_payload(config, args.at)
    _write(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", args.out)
    return OK


def _store_head(url: str) -> dict[str, Any]:
    import asyncio

    from serving.experiments.store import open_store

    async def read() -> dict[str, Any]:
        store = open_store(url)
        try:
            number = await store.head()
            return {} if number == 0 else dict((await store.get(number)).document)
        finally:
            await store.close()

    return asyncio.run(read())


def import_growthbook(args: argparse.Namespace) -> int:
    import json

    import yaml

    from experimentation.growthbook import import_payload
    from serving.experiments.config import ExperimentConfigError

    text = args.file.read_text(encoding="utf-8")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExperimentConfigError([f"{args.file}: invalid JSON: {exc}"]) from exc
    if not isinstance(payload, dict):
        raise ExperimentConfigError([f"{args.file}: payload: must be a JSON object, got {type(payload).__name__}"])
    document = import_payload(payload, str(args.file))
    _write(f"# imported from {args.file}\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), args.out)
    return OK
