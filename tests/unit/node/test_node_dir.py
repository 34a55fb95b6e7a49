"""``medswarm init``: a new node directory with a config file that loads, encrypted key files
that open with the passphrase, and refusals that say what to do."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from eth_account import Account
from libp2p.peer.id import ID

from medswarm import cli
from node.cli import init_passphrase
from node.config import load_config
from node.errors import NodeDirectoryError, PassphraseError
from node.keystore import load_account_key, load_identity
from node.node_dir import NodeSetup, config_text, create_node_directory
from node.passphrase import Passphrase

SECRET = "init passphrase 51c2e0"
CHEAP = "1024"  # scrypt cost for tests


@pytest.fixture(autouse=True)
def no_passphrase_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDSWARM_PASSPHRASE", raising=False)


def passphrase_file(directory: Path, secret: str = SECRET) -> Path:
    path = directory / "node.pass"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def init(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["init", "--scrypt-n", CHEAP, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_init_makes_a_config_and_keys_that_open_with_the_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file = passphrase_file(tmp_path)
    directory = tmp_path / "hospital"

    code, out, _err = init(
        ["--dir", str(directory), "--passphrase-file", str(secret_file), "--json"], capsys
    )

    assert code == 0
    shown = json.loads(out)
    assert sorted(p.name for p in directory.iterdir()) == [
        "account.key",
        "identity.key",
        "node.toml",
    ]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("account.key", "identity.key"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    unlock = Passphrase(SECRET, "the test", "the test")
    key = load_account_key(directory / "account.key", unlock)
    identity = load_identity(directory / "identity.key", unlock)
    assert shown["address"] == Account.from_key(key).address
    assert shown["peer_id"] == ID.from_pubkey(identity.public_key).to_base58()
    assert shown["config_file"] == str(directory / "node.toml")
    assert shown["account_key_file"] == str(directory / "account.key")
    assert shown["identity_key_file"] == str(directory / "identity.key")
    assert shown["admission_command"] == (
        "medswarm consortium propose --rpc http://127.0.0.1:8545 --key-file ADMIN_KEY_FILE "
        f"--address CONSORTIUM_ADDRESS admit {shown['address']} hospital 0"
    )
    config = load_config(directory / "node.toml")
    assert config.node.passphrase_file == str(secret_file)
    assert config.node.scrypt_n == 1024
    assert config.node.name == "hospital" and config.federation.ledger == "consortium"
    assert config.status.bind == ""  # off unless set


def test_the_report_prints_the_admission_command_with_the_consortium_of_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDSWARM_PASSPHRASE", SECRET)
    directory = tmp_path / "st-mary"
    directory.mkdir()
    consortium = "0x" + "12" * 20
    (directory / "deployment.json").write_text(
        json.dumps(
            {
                "format": "medswarm-consortium/1",
                "chain_id": 31337,
                "consortium": consortium,
                "rewards": "0x" + "34" * 20,
            }
        )
    )

    code, out, _err = init(
        ["--dir", str(directory), "--name", "St Mary's", "--cluster", "2", "--site", "va"],
        capsys,
    )

    assert code == 0
    address = Account.from_key(
        load_account_key(directory / "account.key", Passphrase(SECRET, "t", "t"))
    ).address
    checksummed = "0x" + "12" * 20  # digits only: the checksum changes no case
    assert (
        "   medswarm consortium propose --rpc http://127.0.0.1:8545 --key-file ADMIN_KEY_FILE "
        f"--address {checksummed} admit {address} 'St Mary'\"'\"'s' 2\n" in out
    )
    assert f"address         {address}\n" in out
    assert "(encrypted, from MEDSWARM_PASSPHRASE)" in out
    assert f"MEDSWARM_PASSPHRASE=... medswarm node run --config {directory}/node.toml" in out
    assert load_config(directory / "node.toml").node.site == "va"


def test_a_directory_with_keys_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file = passphrase_file(tmp_path)
    directory = tmp_path / "node"
    argv = ["--dir", str(directory), "--passphrase-file", str(secret_file)]
    assert init(argv, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    code, _out, err = init(argv, capsys)

    assert code == 2
    assert err == (
        f"error: {directory} already holds node.toml, account.key, identity.key: medswarm init "
        "never overwrites a node's keys; choose another --dir, or back the old directory up "
        "and move it away\n"
    )
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before


def test_a_lone_key_file_is_enough_to_refuse(tmp_path: Path) -> None:
    (tmp_path / "identity.key").write_text("{}")

    with pytest.raises(NodeDirectoryError, match=r"already holds identity\.key"):
        create_node_directory(
            tmp_path, Passphrase(SECRET, "t", "t"), NodeSetup(name="n", scrypt_n=1024)
        )

    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.key"]


def test_without_a_passphrase_or_a_terminal_nothing_is_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)

    code, _out, err = init(["--dir", str(tmp_path / "node")], capsys)

    assert code == 2
    assert err == (
        "error: no passphrase for the new keys and no terminal to ask on: give "
        "--passphrase-file FILE (mode 0600) or set MEDSWARM_PASSPHRASE\n"
    )
    assert not (tmp_path / "node").exists()


def test_the_prompt_asks_twice_and_refuses_two_different_answers() -> None:
    answers = iter(["first passphrase", "second passphrase"])

    with pytest.raises(PassphraseError, match="the two passphrases differ"):
        init_passphrase(None, {}, ask=lambda _prompt: next(answers), interactive=True)

    same = iter(["a passphrase typed twice"] * 2)
    found = init_passphrase(None, {}, ask=lambda _prompt: next(same), interactive=True)
    assert found.reveal() == "a passphrase typed twice" and found.source == "the terminal"


def test_an_empty_prompt_answer_is_refused() -> None:
    with pytest.raises(PassphraseError, match="empty"):
        init_passphrase(None, {}, ask=lambda _prompt: "", interactive=True)


def test_a_bad_option_value_writes_nothing(tmp_path: Path) -> None:
    setup = NodeSetup(name="n", dataset="no-such-data", scrypt_n=1024)

    with pytest.raises(NodeDirectoryError, match=r"invalid, so nothing was written: .*known data"):
        create_node_directory(tmp_path / "node", Passphrase(SECRET, "t", "t"), setup)

    assert not (tmp_path / "node").exists()


def test_names_with_quotes_and_backslashes_stay_valid_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(config_text(NodeSetup(name='a "quoted" \\ name', site="c:\\data\\x.csv")))

    config = load_config(path)

    assert config.node.name == 'a "quoted" \\ name' and config.node.site == "c:\\data\\x.csv"


def test_node_keys_opens_the_files_init_made_and_names_a_wrong_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDSWARM_PASSPHRASE", SECRET)
    directory = tmp_path / "node"
    code, out, _err = init(["--dir", str(directory), "--json"], capsys)
    assert code == 0
    made = json.loads(out)
    config = str(directory / "node.toml")

    assert cli.main(["node", "keys", "--config", config, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("MEDSWARM_PASSPHRASE", "a wrong passphrase for this")
    code = cli.main(["node", "keys", "--config", config])
    err = capsys.readouterr().err

    assert (shown["address"], shown["peer_id"]) == (made["address"], made["peer_id"])
    assert code == 2
    assert err == (
        f"error: wrong passphrase for {directory}/account.key (it came from "
        "MEDSWARM_PASSPHRASE), or the file was altered: check MEDSWARM_PASSPHRASE or "
        "node.passphrase_file\n"
    )
