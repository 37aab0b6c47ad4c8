"""Build the ``encore-client`` wheel from ``protos/`` (``make client``; run with the dev venv's python).

1. Check ``clients/python/pyproject.toml`` against the server's ``pyproject.toml``: the same version,
   and dependency lower bounds equal to the server's ``grpcio``/``protobuf`` pins (nothing else).
2. Stage a project tree (default ``build/encore-client/``): that pyproject, ``src/encore_client``
   (the hand-written helper), the ``.proto`` files under ``encore_client/protos/encore/v1/``, and
   the code grpcio-tools and mypy-protobuf generate from them, under ``encore_client/v1/``.
3. ``pip wheel`` it (no dependencies, no build isolation: setuptools comes from the dev venv).

The generated modules keep the server's proto file names (``encore/v1/ranking.proto``) and proto
package (``encore.v1``): the wire names are unchanged, and a process that imports both the server's
``encore.v1`` and ``encore_client.v1`` registers byte-identical files once in protobuf's descriptor
pool. Only their Python imports are rewritten, ``from encore.v1 import`` → ``from encore_client.v1
import``, so the wheel installs no ``encore`` package and never overwrites the server's.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

CLIENT = Path(__file__).resolve().parent
REPO = CLIENT.parent.parent
PROTOS = REPO / "protos"
PROTO_DIR = PROTOS / "encore" / "v1"
PINNED = ("grpcio", "protobuf")
_IMPORT = re.compile(r"^(from|import) encore\.v1\b", re.MULTILINE)


def check_pins() -> str:
    """The client's version, after checking it and its dependencies against the server's pyproject;
    ValueError naming the difference otherwise."""
    server = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    client = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    if client["version"] != server["version"]:
        raise ValueError(f"version: client {client['version']} != server {server['version']}")
    pins = {name.strip(): version.strip() for name, _, version in (d.partition("==") for d in server["dependencies"])}
    wanted = sorted(f"{name}>={pins[name]},<{int(pins[name].split('.')[0]) + 1}" for name in PINNED)
    if sorted(client["dependencies"]) != wanted:
        raise ValueError(f"dependencies: client {sorted(client['dependencies'])} != {wanted} (the server's pins)")
    return str(client["version"])


def generate(package: Path) -> None:
    """``package/v1/``: the generated stubs of every ``protos/encore/v1/*.proto`` (gRPC stubs for the
    files that declare a service), imports rewritten to ``encore_client.v1``; ``package/protos/``:
    the ``.proto`` files."""
    protos = sorted(PROTO_DIR.glob("*.proto"))
    with_services = [p for p in protos if re.search(r"^service\s", p.read_text(), re.MULTILINE)]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    protoc = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for cmd in (
            [*protoc, f"--python_out={out}", f"--mypy_out={out}", *map(str, protos)],
            [*protoc, f"--grpc_python_out={out}", f"--mypy_grpc_out={out}", *map(str, with_services)],
        ):
            subprocess.run(cmd, check=True, env=env, capture_output=True)
        v1 = package / "v1"
        v1.mkdir(parents=True)
        (v1 / "__init__.py").write_text('"""Generated from encore/v1/*.proto by build_client.py; do not edit."""\n')
        for source in sorted((out / "encore" / "v1").iterdir()):
            text = _IMPORT.sub(r"\1 encore_client.v1", source.read_text())
            if re.search(r"^(from|import) encore\.", text, re.MULTILINE):
                raise RuntimeError(f"{source.name}: an import of encore.v1 was not rewritten")
            (v1 / source.name).write_text(text)
    (package / "protos" / "encore" / "v1").mkdir(parents=True)
    for proto in protos:
        shutil.copy2(proto, package / "protos" / "encore" / "v1" / proto.name)


def stage(dest: Path) -> Path:
    """A buildable project tree at ``dest`` (replaced if present): pyproject, the helper sources and
    the generated code; returns ``dest / "src"``, the import root of ``encore_client``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    shutil.copy2(CLIENT / "pyproject.toml", dest / "pyproject.toml")
    shutil.copytree(CLIENT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    generate(dest / "src" / "encore_client")
    return dest / "src"


def build_wheel(out_dir: Path, staging: Path) -> Path:
    """Check, stage at ``staging`` and build; returns the wheel written to ``out_dir``."""
    version = check_pins()
    stage(staging)
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"encore_client-{version}-py3-none-any.whl"
    wheel.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out_dir)]
    subprocess.run([*cmd, str(staging)], check=True)
    if not wheel.is_file():
        raise RuntimeError(f"pip wheel did not write {wheel}")
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the wheel goes (default dist/)")
    parser.add_argument("--staging", type=Path, default=REPO / "build" / "encore-client", help="the staged project")
    args = parser.parse_args(argv)
    wheel = build_wheel(args.out, args.staging)
    print(f"{wheel.relative_to(REPO) if wheel.is_relative_to(REPO) else wheel}  {wheel.stat().st_size / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
