"""Key files: created once with mode 0600, loaded unchanged, refused when open or garbled."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from libp2p.peer.id import ID

from node.errors import KeyFileError
from node.keystore import load_or_create_account_key, load_or_create_identity

# anvil's first test account, as published by Foundry and Hardhat.
KNOWN_KEY = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
KNOWN_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_key_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_new_account_key_is_written_as_hex_for_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "account.key"
    old_umask = os.umask(0)  # a permissive umask must not widen the file's mode
    try:
        key = load_or_create_account_key(path)
    finally:
        os.umask(old_umask)

    assert mode_of(path) == 0o600
    assert path.read_text() == key.removeprefix("0x") + "\n"
    assert key.startswith("0x") and len(key) == 66
    assert load_or_create_account_key(path) == key


def test_an_existing_account_key_is_used_as_is(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "account.key", "0x" + KNOWN_KEY.upper() + "\n")

    key = load_or_create_account_key(path)

    assert key == "0x" + KNOWN_KEY
    assert Account.from_key(key).address == KNOWN_ADDRESS


def test_the_identity_keeps_its_peer_id_across_loads(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"

    first = load_or_create_identity(path)
    second = load_or_create_identity(path)

    assert mode_of(path) == 0o600
    peer_id = ID.from_pubkey(first.public_key)
    assert peer_id == ID.from_pubkey(second.public_key)
    assert peer_id.to_base58().startswith("12D3KooW")  # an Ed25519 identity


def test_the_identity_is_the_ed25519_key_of_the_stored_seed(tmp_path: Path) -> None:
    seed = bytes(range(32))
    path = write_key_file(tmp_path / "identity.key", seed.hex() + "\n")

    pair = load_or_create_identity(path)

    # the public key worked out by a second Ed25519 implementation
    expected = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    assert pair.public_key.to_bytes() == expected.public_bytes(Encoding.Raw, PublicFormat.Raw)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640])
@pytest.mark.parametrize("load", [load_or_create_account_key, load_or_create_identity])
def test_a_key_file_others_can_read_is_refused(
    tmp_path: Path, mode: int, load: Callable[[Path], object]
) -> None:
    path = write_key_file(tmp_path / "k.key", KNOWN_KEY + "\n", mode)

    with pytest.raises(KeyFileError) as caught:
        load(path)

    assert f"chmod 600 {path}" in str(caught.value)
    assert mode_of(path) == mode  # left for the operator to fix


@pytest.mark.parametrize(
    "text", ["", "not a key\n", KNOWN_KEY[:-2] + "\n", KNOWN_KEY + "00\n", "zz" * 32]
)
@pytest.mark.parametrize("load", [load_or_create_account_key, load_or_create_identity])
def test_a_malformed_key_file_is_named_in_the_error(
    tmp_path: Path, text: str, load: Callable[[Path], object]
) -> None:
    path = write_key_file(tmp_path / "broken.key", text)

    with pytest.raises(KeyFileError) as caught:
        load(path)

    assert str(path) in str(caught.value)
    assert path.read_text() == text  # never overwritten


def test_a_zero_account_key_is_refused(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "account.key", "00" * 32)

    with pytest.raises(KeyFileError, match="secp256k1"):
        load_or_create_account_key(path)


def test_two_nodes_creating_the_same_file_at_once_get_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    barrier = threading.Barrier(4)
    peer_ids: list[ID] = []

    def create() -> None:
        barrier.wait(timeout=5)
        peer_ids.append(ID.from_pubkey(load_or_create_identity(path).public_key))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert len(peer_ids) == 4 and len(set(peer_ids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["identity.key"]  # no leftovers
