"""What the command line prints when a sub-command fails."""

from __future__ import annotations

import argparse
import errno

import pytest

from medswarm import cli
from medswarm.errors import MedswarmError


def failing_parser(error: BaseException) -> argparse.ArgumentParser:
    def handler(args: argparse.Namespace) -> int:
        raise error

    parser = argparse.ArgumentParser(prog="medswarm")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    parser.set_defaults(handler=handler)
    return parser


def run_failing(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> int:
    monkeypatch.setattr(cli, "build_parser", lambda: failing_parser(error))
    return cli.main([])


def test_a_full_disk_in_a_task_group_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/state/blobs/.partial-x")
    group = ExceptionGroup("tasks", [ExceptionGroup("inner", [full]), MedswarmError("bad")])
    assert run_failing(monkeypatch, group) == 2
    err = capsys.readouterr().err
    assert "error: the disk is full" in err and "network.retain_rounds" in err
    assert "/state/blobs/.partial-x" in err and "error: bad" in err
    assert "Traceback" not in err


def test_other_os_errors_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PermissionError):
        run_failing(monkeypatch, PermissionError(errno.EACCES, "denied"))
