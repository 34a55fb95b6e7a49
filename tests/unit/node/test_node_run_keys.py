"""``medswarm node run`` and its key files: created encrypted with the configured passphrase
and cost, refused without a passphrase or with a wrong one, errors that say what to do."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from medswarm import cli

SECRET = "node run passphrase 7f3a"


def node_config(directory: Path, data_dir: Path, **node: str | int) -> Path:
    lines = [
        "[node]",
        'site = "cleveland"',
        f'data_dir = "{data_dir}"',
        "scrypt_n = 1024",
        *(f"{key} = {json.dumps(value)}" for key, value in node.items()),
        "[chain]",
        'deployment_file = "missing-deployment.json"',
    ]
    path = directory / "node.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_node(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["node", "run", "--config", str(config)])
    return code, capsys.readouterr().err


@pytest.fixture(autouse=True)
def no_passphrase_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDSWARM_PASSPHRASE", raising=False)


def test_without_a_passphrase_a_new_node_makes_no_key(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = node_config(tmp_path, data_dir)

    code, err = run_node(config, capsys)

    assert code == 2
    assert (
        f"error: no passphrase to encrypt a new Ethereum account key in {tmp_path}/account.key: "
        "set MEDSWARM_PASSPHRASE or node.passphrase_file" in err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.toml"]


def test_keys_are_made_with_the_passphrase_file_and_refused_with_a_wrong_passphrase(
    tmp_path: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "secret").mkdir()
    passphrase_file = tmp_path / "secret" / "node.pass"
    passphrase_file.write_text(SECRET + "\n")
    passphrase_file.chmod(0o600)
    config = node_config(tmp_path, data_dir, passphrase_file="secret/node.pass")

    code, err = run_node(config, capsys)

    # the keys came first; the missing deployment record stops the node after them
    assert code == 2 and "missing-deployment.json not found" in err
    account = json.loads((tmp_path / "account.key").read_text())
    identity = json.loads((tmp_path / "identity.key").read_text())
    assert account["version"] == 3 and account["crypto"]["kdfparams"]["n"] == 1024
    assert identity["format"] == "medswarm-identity" and identity["kdfparams"]["n"] == 1024
    for name in ("account.key", "identity.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600

    config = node_config(tmp_path, data_dir)  # no passphrase file: the variable, a wrong one
    monkeypatch.setenv("MEDSWARM_PASSPHRASE", SECRET.upper())
    code, err = run_node(config, capsys)

    assert code == 2
    assert (
        f"error: wrong passphrase for {tmp_path}/account.key (it came from MEDSWARM_PASSPHRASE), "
        "or the file was altered: check MEDSWARM_PASSPHRASE or node.passphrase_file" in err
    )
    assert SECRET not in err and SECRET.upper() not in err


def test_a_missing_passphrase_file_is_named(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = node_config(tmp_path, data_dir, passphrase_file="nowhere.pass")

    code, err = run_node(config, capsys)

    assert code == 2
    assert f"node.passphrase_file {tmp_path}/nowhere.pass does not exist" in err
