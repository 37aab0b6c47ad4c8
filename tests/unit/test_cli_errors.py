"""One exception root, one exit-code table, one error handler for every ``encore`` command."""

from __future__ import annotations

import argparse
import ast
import errno
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import cli.build
import cli.experiments
import cli.main
from cli import exit_codes
from cli.exit_codes import TargetUnreachable, UsageError, exit_code_for
from common.errors import EncoreError, InternalError
from features.datasets import DatasetError
from features.redis_store import RedisURLError
from features.store import FeatureStoreError, FeatureStoreTimeout
from models.bundle import BundleError
from models.training import TrainingError
from ranking.budget import DeadlineExceeded
from ranking.pipeline import ConservationError
from serving.capture import CaptureFormatError
from serving.errors import ConfigError, InvalidRequest, ListenError, Overloaded
from serving.experiments.config import ExperimentConfigError, ExperimentError
from serving.logsink import WriteError
from tests.support import REPO

EXCEPTION_SUFFIXES = ("Error", "Exception", "Exceeded", "Timeout")


def _exception_classes() -> list[tuple[str, str]]:
    """(module, class) of every public class in the code base whose base looks like an exception."""
    packages = [p.parent for p in REPO.glob("*/__init__.py") if p.parent.name not in {"tests", "protos"}]
    found = []
    for package in packages:
        for path in sorted(package.rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                    continue
                bases = [
                    b.id if isinstance(b, ast.Name) else b.attr
                    for b in node.bases
                    if isinstance(b, ast.Name | ast.Attribute)
                ]
                if any(base.endswith(EXCEPTION_SUFFIXES) for base in bases):
                    found.append((module, node.name))
    return found


def test_every_encore_exception_derives_from_the_one_root_and_is_in_its_tree() -> None:
    classes = _exception_classes()
    assert len(classes) >= 20, classes  # the scan finds them (InvalidRequest, BundleError, ...)
    tree = sys.modules["common.errors"].__doc__ or ""
    for module, name in classes:
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, EncoreError), f"{module}.{name} does not derive from EncoreError"
        assert f" {name} " in tree, f"{module}.{name} is missing from the tree in common/errors.py"


def test_conservation_errors_are_internal_errors_not_assertions() -> None:
    """``python -O`` strips asserts, not this; and the CLI maps it to the bug exit code."""
    assert issubclass(ConservationError, InternalError)
    assert not issubclass(ConservationError, AssertionError)


def test_a_write_error_is_still_an_os_error() -> None:
    exc = WriteError(3, OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(exc, OSError) and isinstance(exc, EncoreError)
    assert exc.errno == errno.ENOSPC and exc.written == 3
    assert "3 records written first" in str(exc)


def test_a_malformed_redis_url_is_still_a_value_error() -> None:
    assert issubclass(RedisURLError, ValueError)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("port: bad"), exit_codes.BAD_INPUT),
        (ListenError("port: cannot listen on 127.0.0.1:1: Address already in use"), exit_codes.BAD_INPUT),
        (BundleError("missing"), exit_codes.BAD_INPUT),
        (ExperimentConfigError(["a: b"]), exit_codes.BAD_INPUT),
        (ExperimentError("x"), exit_codes.BAD_INPUT),
        (DatasetError(Path("plays.tsv"), "bad row", 3), exit_codes.BAD_INPUT),
        (TrainingError("x"), exit_codes.BAD_INPUT),
        (CaptureFormatError("x"), exit_codes.BAD_INPUT),
        (FeatureStoreError("x"), exit_codes.BAD_INPUT),
        (FeatureStoreTimeout("x"), exit_codes.BAD_INPUT),
        (RedisURLError("x"), exit_codes.BAD_INPUT),
        (WriteError(0, OSError(errno.ENOSPC, "full")), exit_codes.BAD_INPUT),
        (InvalidRequest("user_id", "empty"), exit_codes.BAD_INPUT),
        (Overloaded(), exit_codes.BAD_INPUT),
        (DeadlineExceeded(), exit_codes.BAD_INPUT),
        (UsageError("x"), exit_codes.BAD_INPUT),
        (TargetUnreachable("x"), exit_codes.BAD_INPUT),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), exit_codes.BAD_INPUT),
        (SystemExit("bench: --rates must be positive"), exit_codes.BAD_INPUT),
        (SystemExit(3), 3),
        (SystemExit(None), exit_codes.OK),
        (ConservationError("filter lossy"), exit_codes.INTERNAL),
        (InternalError("x"), exit_codes.INTERNAL),
        (RuntimeError("a bug"), exit_codes.INTERNAL),
        (KeyError("a bug"), exit_codes.INTERNAL),
        (KeyboardInterrupt(), exit_codes.INTERRUPTED),
        (BrokenPipeError(errno.EPIPE, "Broken pipe"), exit_codes.PIPE_CLOSED),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_each_exception_maps_to_its_documented_exit_code(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code


def test_the_exit_code_table_documents_every_code() -> None:
    rows = {tuple(line.split()[:2]) for line in (exit_codes.__doc__ or "").splitlines() if line[:1].isdigit()}
    names = ("OK", "FAILED", "BAD_INPUT", "SRM", "INTERNAL", "INTERRUPTED", "PIPE_CLOSED")
    assert rows == {(str(getattr(exit_codes, name)), name) for name in names}


def _fail_build_with(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    def run(args: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(cli.build, "run", run)


def test_an_encore_error_ends_the_command_with_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_build_with(monkeypatch, BundleError("bundles/x: manifest.json is missing"))
    assert cli.main.main(["build"]) == 2
    err = capsys.readouterr().err
    assert err == "encore build: bundles/x: manifest.json is missing\n"


def test_an_os_error_on_a_given_file_is_bad_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_build_with(monkeypatch, FileNotFoundError(errno.ENOENT, "No such file or directory", "x.yaml"))
    assert cli.main.main(["build"]) == 2
    assert capsys.readouterr().err == "encore build: [Errno 2] No such file or directory: 'x.yaml'\n"


def test_a_subcommand_error_names_the_subcommand(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def validate(args: argparse.Namespace) -> int:
        raise BundleError("no manifest")

    monkeypatch.setattr(cli.experiments, "validate", validate)
    assert cli.main.main(["experiments", "validate", "x.yaml"]) == 2
    assert capsys.readouterr().err == "encore experiments validate: no manifest\n"


def test_a_usage_error_a_command_finds_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main.main(["build", "--dataset", "hetrec"]) == 2
    assert capsys.readouterr().err == "encore build: --data-path is required with --dataset hetrec\n"


def test_a_bug_keeps_its_traceback_and_exits_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_build_with(monkeypatch, RuntimeError("boom"))
    assert cli.main.main(["build"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1] == "encore build: internal error (a bug): RuntimeError: boom"


def test_an_internal_error_exits_70(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _fail_build_with(monkeypatch, ConservationError("filter lossy: 3 in, 2 kept + 0 removed"))
    assert cli.main.main(["build"]) == 70
    assert capsys.readouterr().err.splitlines()[-1].startswith("encore build: internal error (a bug): Conservation")


def test_a_broken_pipe_and_ctrl_c_end_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _fail_build_with(monkeypatch, BrokenPipeError(errno.EPIPE, "Broken pipe"))
    assert cli.main.main(["build"]) == 141
    _fail_build_with(monkeypatch, KeyboardInterrupt())
    assert cli.main.main(["build"]) == 130
    assert capsys.readouterr().err == ""


def test_a_command_exiting_with_a_message_gets_the_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def bench(argv: object) -> int:
        raise SystemExit("bench: --rates must be positive and increasing")

    monkeypatch.setitem(cli.main.OWN_ARGUMENTS, "bench", bench)
    assert cli.main.main(["bench", "--rates", "3,1"]) == 2
    assert capsys.readouterr().err == "encore bench: --rates must be positive and increasing\n"


def test_an_unknown_flag_is_a_usage_error_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main.main(["serve", "--no-such-flag"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


def test_the_cli_imports_no_command_dependency_until_a_command_runs() -> None:
    """``--workers`` needs prometheus_client unimported; ``encore --help`` needs nothing heavy."""
    probe = (
        "import sys, cli.main; cli.main.parser(); "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'prometheus_client', 'grpc', 'numpy', 'serving', 'ranking', 'features', 'models', 'loadtests', 'offline'})))"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []


def test_every_command_module_is_registered() -> None:
    names = {p.stem for p in Path(cli.main.__file__).parent.glob("*.py")} - {
        "__init__",
        "__main__",
        "main",
        "exit_codes",
        "connect",
        "spark_options",  # --spark-master and --spark-conf of every --engine spark command
        "experiments_api",  # the API server and client subcommands of `experiments`
        "experiments_growthbook",  # the GrowthBook export and import subcommands of `experiments`
    }
    assert names == {m.__name__.rpartition(".")[2] for m in cli.main.COMMANDS}


def test_the_exception_root_imports_nothing_of_encore() -> None:
    """Every package may import ``common``; it depends on no package in turn."""
    first_party = ({p.parent.name for p in REPO.glob("*/__init__.py")} | {"encore"}) - {"common"}
    for path in (REPO / "common").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            assert not {n.split(".")[0] for n in names} & first_party, f"{path.name} imports {names}"
