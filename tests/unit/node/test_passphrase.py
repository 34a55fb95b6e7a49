"""Where a node's passphrase comes from: node.passphrase_file, else MEDSWARM_PASSPHRASE."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import config_from_dict
from node.errors import ConfigError, KeyFileError, PassphraseError
from node.passphrase import Passphrase, node_passphrase, resolve_passphrase

SECRET = "Tr0ub4dor&3 with spaces "


def passphrase_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_environment_variable_gives_the_passphrase() -> None:
    passphrase = node_passphrase("", Path("/nowhere"), {"MEDSWARM_PASSPHRASE": SECRET})

    assert passphrase.given and passphrase.reveal() == SECRET
    assert passphrase.source == "MEDSWARM_PASSPHRASE"
    assert passphrase.options == "MEDSWARM_PASSPHRASE or node.passphrase_file"


def test_a_passphrase_file_is_relative_to_the_config_and_loses_one_newline(
    tmp_path: Path,
) -> None:
    passphrase_file(tmp_path / "pass", SECRET + "\n")

    passphrase = node_passphrase("pass", tmp_path, {})

    assert passphrase.reveal() == SECRET  # inner and trailing spaces kept
    assert passphrase.source == f"node.passphrase_file {tmp_path / 'pass'}"


def test_the_file_wins_over_the_variable_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = passphrase_file(tmp_path / "pass", SECRET)

    passphrase = node_passphrase(str(path), Path("/elsewhere"), {"MEDSWARM_PASSPHRASE": "other"})

    assert passphrase.reveal() == SECRET
    assert "MEDSWARM_PASSPHRASE is set but not used" in caplog.text
    assert SECRET not in caplog.text and "other" not in caplog.text


def test_nothing_given_is_no_passphrase() -> None:
    passphrase = node_passphrase("", Path("."), {})

    assert not passphrase.given
    with pytest.raises(PassphraseError, match=r"set MEDSWARM_PASSPHRASE or node\.passphrase_file"):
        passphrase.reveal()


@pytest.mark.parametrize(
    ("text", "mode", "error", "match"),
    [
        (None, 0o600, PassphraseError, "does not exist: create it"),
        ("", 0o600, PassphraseError, "is empty"),
        ("\n", 0o600, PassphraseError, "is empty"),
        (SECRET, 0o640, KeyFileError, "chmod 600"),
    ],
)
def test_an_unusable_passphrase_file_is_an_error_naming_it(
    tmp_path: Path, text: str | None, mode: int, error: type[Exception], match: str
) -> None:
    path = tmp_path / "pass"
    if text is not None:
        passphrase_file(path, text, mode)

    with pytest.raises(error, match=match) as caught:
        node_passphrase("pass", tmp_path, {})

    assert str(path) in str(caught.value)
    assert SECRET not in str(caught.value)


def test_an_empty_variable_is_an_error() -> None:
    with pytest.raises(PassphraseError, match="MEDSWARM_PASSPHRASE is set but empty"):
        resolve_passphrase({"MEDSWARM_PASSPHRASE": ""}, None, "--passphrase-file")


def test_the_repr_never_shows_the_passphrase() -> None:
    passphrase = Passphrase(SECRET, "MEDSWARM_PASSPHRASE", "MEDSWARM_PASSPHRASE")

    for shown in (repr(passphrase), str(passphrase), f"{passphrase}", f"{passphrase!r}"):
        assert SECRET not in shown and "MEDSWARM_PASSPHRASE" in shown
    assert "none given" in repr(Passphrase.missing("x"))


def test_the_node_table_takes_a_passphrase_file_and_a_scrypt_cost() -> None:
    config = config_from_dict({"node": {"passphrase_file": "secret/pass", "scrypt_n": 4096}})

    assert config.node.passphrase_file == "secret/pass" and config.node.scrypt_n == 4096
    assert config_from_dict({}).node.scrypt_n == 2**18
    for bad in (1000, 512, 2**21):
        with pytest.raises(ConfigError, match=r"node.scrypt_n: scrypt cost n = \d+: give a power"):
            config_from_dict({"node": {"scrypt_n": bad}})
