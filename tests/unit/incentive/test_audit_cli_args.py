"""`medswarm audit` argument handling that needs no chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from medswarm.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit"], "error: give either --run-dir RUN or --rpc URL --registry ADDRESS"),
        (["audit", "--rpc", "http://127.0.0.1:1"], "error: --rpc needs --registry"),
        (["audit", "--run-dir", "x", "--rpc", "http://h"], "error: give either --run-dir or"),
    ],
)
def test_source_options_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(message)


def test_verify_needs_an_existing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "verify", str(tmp_path / "m.pt"), "--run-dir", str(tmp_path)])

    assert code == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_dir_without_chain_record_names_the_expected_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "chain/deployment.json" in err and "chain/events.jsonl" in err
