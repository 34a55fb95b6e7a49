"""Key files: created encrypted with mode 0600, opened with the passphrase, refused when open,
garbled, altered or locked with another passphrase; plain-hex files of old still read."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from libp2p.peer.id import ID

from node.errors import KeyFileError, PassphraseError
from node.keystore import (
    load_account_key,
    load_identity,
    load_or_create_account_key,
    load_or_create_identity,
    write_account_key,
)
from node.passphrase import Passphrase

# anvil's first test account, as published by Foundry and Hardhat.
KNOWN_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KNOWN_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
SEED = bytes(range(32))
OPTIONS = "MEDSWARM_PASSPHRASE or node.passphrase_file"
SECRET = "correct horse battery staple"
LIGHT = 1024  # the lowest cost allowed: fast tests
PASSPHRASE = Passphrase(SECRET, "MEDSWARM_PASSPHRASE", OPTIONS)
NONE_GIVEN = Passphrase.missing(OPTIONS)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_key_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def make_account(path: Path) -> str:
    return load_or_create_account_key(path, PASSPHRASE, LIGHT)


def make_identity(path: Path) -> str:
    return str(ID.from_pubkey(load_or_create_identity(path, PASSPHRASE, LIGHT).public_key))


def open_identity_independently(document: dict[str, Any], passphrase: str) -> bytes:
    """The documented medswarm-identity format, decrypted without medswarm's code."""
    params = document["kdfparams"]
    key = Scrypt(
        salt=bytes.fromhex(params["salt"]), length=32, n=params["n"], r=params["r"], p=params["p"]
    ).derive(passphrase.encode())
    header = {k: v for k, v in document.items() if k != "ciphertext"}
    associated = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return AESGCM(key).decrypt(
        bytes.fromhex(document["nonce"]), bytes.fromhex(document["ciphertext"]), associated
    )


# ----------------------------------------------------------------------------- round trips


def test_a_new_account_key_is_a_v3_keystore_for_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "account.key"
    old_umask = os.umask(0)  # a permissive umask must not widen the file's mode
    try:
        key = make_account(path)
    finally:
        os.umask(old_umask)

    assert mode_of(path) == 0o600
    assert key.startswith("0x") and len(key) == 66
    text = path.read_text()
    assert key[2:].lower() not in text.lower()
    document = json.loads(text)
    assert document["version"] == 3 and document["crypto"]["kdf"] == "scrypt"
    assert document["crypto"]["kdfparams"]["n"] == LIGHT
    # eth-account's own decryption and address agree
    assert "0x" + bytes(Account.decrypt(document, SECRET)).hex() == key
    assert document["address"].lower() == Account.from_key(key).address[2:].lower()
    assert load_or_create_account_key(path, PASSPHRASE, LIGHT) == key
    assert load_account_key(path, PASSPHRASE) == key


def test_the_identity_keeps_its_peer_id_and_opens_by_the_documented_format(
    tmp_path: Path,
) -> None:
    path = tmp_path / "identity.key"

    first = make_identity(path)
    second = make_identity(path)

    assert mode_of(path) == 0o600
    assert first == second and first.startswith("12D3KooW")  # an Ed25519 identity
    document = json.loads(path.read_text())
    assert document["format"] == "medswarm-identity" and document["version"] == 1
    assert document["peer_id"] == first
    seed = open_identity_independently(document, SECRET)
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    pair = load_identity(path, PASSPHRASE)
    assert pair.public_key.to_bytes() == public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert seed.hex() not in path.read_text()


def test_new_key_files_take_the_standard_scrypt_cost_by_default(tmp_path: Path) -> None:
    load_or_create_account_key(tmp_path / "account.key", PASSPHRASE)
    load_or_create_identity(tmp_path / "identity.key", PASSPHRASE)

    account = json.loads((tmp_path / "account.key").read_text())
    identity = json.loads((tmp_path / "identity.key").read_text())
    assert account["crypto"]["kdfparams"]["n"] == 2**18
    assert identity["kdfparams"] == {**identity["kdfparams"], "n": 2**18, "r": 8, "p": 1}


def test_a_key_written_by_the_launcher_opens_with_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "account.key"

    write_account_key(path, "0x" + KNOWN_KEY, PASSPHRASE, LIGHT)

    assert mode_of(path) == 0o600 and KNOWN_KEY not in path.read_text()
    assert Account.from_key(load_account_key(path, PASSPHRASE)).address == KNOWN_ADDRESS
    with pytest.raises(KeyFileError, match="already exists"):
        write_account_key(path, "0x" + KNOWN_KEY, PASSPHRASE, LIGHT)


def test_a_foreign_v3_keystore_opens(tmp_path: Path) -> None:
    # written by eth-account with its own defaults (another tool's file)
    document = Account.encrypt("0x" + KNOWN_KEY, SECRET, kdf="scrypt", iterations=2**12)
    path = write_key_file(tmp_path / "account.key", json.dumps(document))

    assert load_account_key(path, PASSPHRASE) == "0x" + KNOWN_KEY


# ------------------------------------------------------------------ passphrase problems


@pytest.mark.parametrize(
    ("make", "load"),
    [
        (make_account, load_account_key),
        (make_identity, load_identity),
    ],
)
def test_a_wrong_passphrase_names_the_file_and_where_to_look(
    tmp_path: Path, make: Callable[[Path], object], load: Callable[[Path, Passphrase], object]
) -> None:
    path = tmp_path / "secret.key"
    make(path)
    before = path.read_text()

    with pytest.raises(PassphraseError) as caught:
        load(path, Passphrase("Correct horse battery staple", "MEDSWARM_PASSPHRASE", OPTIONS))

    message = str(caught.value)
    assert f"wrong passphrase for {path}" in message
    assert "check MEDSWARM_PASSPHRASE or node.passphrase_file" in message
    assert "came from MEDSWARM_PASSPHRASE" in message
    assert SECRET not in message and "Correct horse" not in message
    assert path.read_text() == before


@pytest.mark.parametrize(
    ("make", "load"),
    [
        (make_account, load_or_create_account_key),
        (make_identity, load_or_create_identity),
    ],
)
def test_an_encrypted_file_without_a_passphrase_says_how_to_give_one(
    tmp_path: Path, make: Callable[[Path], object], load: Callable[[Path, Passphrase], object]
) -> None:
    path = tmp_path / "secret.key"
    make(path)

    with pytest.raises(PassphraseError) as caught:
        load(path, NONE_GIVEN)

    assert str(path) in str(caught.value)
    assert "no passphrase was given: set MEDSWARM_PASSPHRASE or node.passphrase_file" in str(
        caught.value
    )


@pytest.mark.parametrize("load", [load_or_create_account_key, load_or_create_identity])
def test_no_key_is_created_without_a_passphrase(
    tmp_path: Path, load: Callable[[Path, Passphrase], object]
) -> None:
    path = tmp_path / "new.key"

    with pytest.raises(PassphraseError, match=r"no passphrase to encrypt a new .* in .*new\.key"):
        load(path, NONE_GIVEN)

    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------ altered files


def altered(path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))
    return path


def flip_hex(value: str) -> str:
    return ("1" if value[0] == "0" else "0") + value[1:]


def test_an_altered_identity_file_is_refused(tmp_path: Path) -> None:
    other_peer = make_identity(tmp_path / "other.key")
    changes: dict[str, Callable[[dict[str, Any]], None]] = {
        "ciphertext": lambda d: d.update(ciphertext=flip_hex(d["ciphertext"])),
        "nonce": lambda d: d.update(nonce=flip_hex(d["nonce"])),
        "salt": lambda d: d["kdfparams"].update(salt=flip_hex(d["kdfparams"]["salt"])),
        "peer id": lambda d: d.update(peer_id=other_peer),  # authenticated: a tag mismatch
        "cost": lambda d: d["kdfparams"].update(n=2048),
    }
    for name, change in changes.items():
        path = tmp_path / f"{name}.key"
        make_identity(path)
        altered(path, change)
        with pytest.raises(PassphraseError, match="or the file was altered") as caught:
            load_identity(path, PASSPHRASE)
        assert str(path) in str(caught.value), name


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(version=2), "version 2"),
        (lambda d: d.update(extra=1), "fields must be exactly"),
        (lambda d: d.update(cipher="aes-128-ctr"), "aes-256-gcm"),
        (lambda d: d["kdfparams"].update(n=2**30), "costs more than we will spend"),
        (lambda d: d["kdfparams"].update(n=1000), "not a power of two"),
        (lambda d: d.update(nonce="zz"), "nonce must be hex"),
    ],
)
def test_a_malformed_identity_keystore_names_the_file(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], match: str
) -> None:
    path = tmp_path / "identity.key"
    make_identity(path)
    altered(path, change)

    with pytest.raises(KeyFileError, match=match) as caught:
        load_identity(path, PASSPHRASE)

    assert not isinstance(caught.value, PassphraseError)
    assert str(path) in str(caught.value)


def test_an_altered_account_keystore_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ciphertext.key"
    make_account(path)
    altered(path, lambda d: d["crypto"].update(ciphertext=flip_hex(d["crypto"]["ciphertext"])))
    with pytest.raises(PassphraseError, match="or the file was altered"):
        load_account_key(path, PASSPHRASE)

    path = tmp_path / "address.key"
    make_account(path)
    altered(path, lambda d: d.update(address=KNOWN_ADDRESS[2:]))
    with pytest.raises(KeyFileError, match="does not belong to its address"):
        load_account_key(path, PASSPHRASE)

    path = tmp_path / "cost.key"
    make_account(path)
    altered(path, lambda d: d["crypto"]["kdfparams"].update(n=2**30))
    with pytest.raises(KeyFileError, match="costs more than we will spend"):
        load_account_key(path, PASSPHRASE)

    path = write_key_file(tmp_path / "truncated.key", '{"version": 3, "crypto": {')
    with pytest.raises(KeyFileError, match="not valid JSON"):
        load_account_key(path, PASSPHRASE)


# --------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640])
@pytest.mark.parametrize(
    ("make", "load"),
    [
        (make_account, load_or_create_account_key),
        (make_identity, load_or_create_identity),
    ],
)
def test_a_key_file_others_can_read_is_refused(
    tmp_path: Path,
    mode: int,
    make: Callable[[Path], object],
    load: Callable[[Path, Passphrase], object],
) -> None:
    encrypted = tmp_path / "encrypted.key"
    make(encrypted)
    encrypted.chmod(mode)
    plain = write_key_file(tmp_path / "plain.key", KNOWN_KEY + "\n", mode)

    for path in (encrypted, plain):
        with pytest.raises(KeyFileError) as caught:
            load(path, PASSPHRASE)
        assert f"chmod 600 {path}" in str(caught.value)
        assert mode_of(path) == mode  # left for the operator to fix


# ---------------------------------------------------------------- plain-hex files of old


@pytest.mark.parametrize(
    ("load", "make_expected"),
    [
        (load_or_create_account_key, lambda: "0x" + KNOWN_KEY),
        (load_or_create_identity, lambda: None),
    ],
)
def test_a_plain_hex_file_is_encrypted_in_place_when_a_passphrase_is_given(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    load: Callable[..., Any],
    make_expected: Callable[[], str | None],
) -> None:
    path = write_key_file(tmp_path / "old.key", "0x" + KNOWN_KEY.upper() + "\n")
    caplog.set_level(logging.INFO)

    first = load(path, PASSPHRASE, LIGHT)

    assert mode_of(path) == 0o600
    assert KNOWN_KEY not in path.read_text().lower()
    json.loads(path.read_text())  # now a keystore
    second = load(path, PASSPHRASE, LIGHT)
    if make_expected() is not None:
        assert first == second == make_expected()
        assert Account.from_key(first).address == KNOWN_ADDRESS
    else:
        assert first.public_key.to_bytes() == second.public_key.to_bytes()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1
        and "now encrypted with the passphrase from MEDSWARM_PASSPHRASE" in (warnings[0])
    )
    assert [p.name for p in tmp_path.iterdir()] == ["old.key"]  # no leftovers
    assert KNOWN_KEY not in caplog.text.lower() and SECRET not in caplog.text


def test_a_plain_hex_file_without_a_passphrase_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_key_file(tmp_path / "account.key", "0x" + KNOWN_KEY + "\n")

    key = load_or_create_account_key(path, NONE_GIVEN, LIGHT)

    assert key == "0x" + KNOWN_KEY
    assert path.read_text() == "0x" + KNOWN_KEY + "\n"  # unchanged
    assert "unencrypted: set MEDSWARM_PASSPHRASE or node.passphrase_file" in caplog.text
    assert KNOWN_KEY not in caplog.text.lower()


def test_the_read_only_loader_never_changes_a_plain_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_key_file(tmp_path / "admin.key", KNOWN_KEY + "\n")

    assert load_account_key(path, PASSPHRASE) == "0x" + KNOWN_KEY

    assert path.read_text() == KNOWN_KEY + "\n"
    assert "unencrypted" in caplog.text


def test_the_identity_of_a_plain_seed_file_is_its_ed25519_key(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "identity.key", SEED.hex() + "\n")

    pair = load_or_create_identity(path, NONE_GIVEN, LIGHT)

    # the public key worked out by a second Ed25519 implementation
    expected = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    assert pair.public_key.to_bytes() == expected.public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize(
    "text", ["", "not a key\n", KNOWN_KEY[:-2] + "\n", KNOWN_KEY + "00\n", "zz" * 32]
)
@pytest.mark.parametrize("load", [load_or_create_account_key, load_or_create_identity])
def test_a_malformed_key_file_is_named_in_the_error(
    tmp_path: Path, text: str, load: Callable[[Path, Passphrase], object]
) -> None:
    path = write_key_file(tmp_path / "broken.key", text)

    with pytest.raises(KeyFileError) as caught:
        load(path, PASSPHRASE)

    assert str(path) in str(caught.value)
    assert path.read_text() == text  # never overwritten


def test_a_zero_account_key_is_refused(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "account.key", "00" * 32)

    with pytest.raises(KeyFileError, match="not a usable Ethereum account key"):
        load_or_create_account_key(path, PASSPHRASE, LIGHT)


def test_a_missing_file_for_the_read_only_loader_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_account_key(tmp_path / "missing.key", PASSPHRASE)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- the rest


def test_two_nodes_creating_the_same_file_at_once_get_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    barrier = threading.Barrier(4)
    peer_ids: list[str] = []

    def create() -> None:
        barrier.wait(timeout=5)
        peer_ids.append(make_identity(path))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(peer_ids) == 4 and len(set(peer_ids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["identity.key"]  # no leftovers


def test_no_key_or_passphrase_reaches_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    account = make_account(tmp_path / "account.key")
    pair = load_or_create_identity(tmp_path / "identity.key", PASSPHRASE, LIGHT)
    legacy = write_key_file(tmp_path / "legacy.key", KNOWN_KEY + "\n")
    load_or_create_account_key(legacy, PASSPHRASE, LIGHT)
    with pytest.raises(PassphraseError):
        load_account_key(tmp_path / "account.key", Passphrase("nope", "test", OPTIONS))

    text = caplog.text.lower()
    for secret in (account[2:], pair.private_key.to_bytes().hex(), KNOWN_KEY):
        assert secret not in text
    assert SECRET.lower() not in text and "nope" not in text
    assert "created a new ethereum account key" in text  # the log did capture something
