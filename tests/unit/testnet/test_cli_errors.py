"""The command line turns bad input into one clear line on stderr and exit code 2."""

from pathlib import Path

import pytest

from medswarm.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_missing_data_names_the_files_and_the_download(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(
        ["testnet", "run", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")], capsys
    )
    assert code == 2
    assert err.startswith("error: ")
    assert "processed.cleveland.data" in err
    assert "https://archive.ics.uci.edu" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "summary.json").exists()


def test_unknown_config_key_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "fed.toml"
    config.write_text("[training]\nlearning_rate = 0.1\n")
    code, err = run_cli(["testnet", "run", "--config", str(config)], capsys)
    assert code == 2
    assert "unknown key 'learning_rate' in [training]" in err
    assert "lr" in err


def test_too_many_nodes_for_the_data_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_cli(["testnet", "run", "--nodes", "5", "--out", str(tmp_path)], capsys)
    assert code == 2
    assert "--nodes must be 1 to 4" in err


def test_bad_rounds_flag(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["testnet", "run", "--rounds", "0"], capsys)
    assert code == 2
    assert "rounds must be at least 1" in err
