"""A node's two secret keys, each in its own file encrypted with the node's passphrase: the
Ethereum account key and the libp2p identity.

The account key signs transactions and announcements; the identity is an Ed25519 seed from
which the node's libp2p peer id follows, so the peer id registered on chain stays the same
across restarts. The account key file is a Web3 Secret Storage (v3) keystore, the identity
file a ``medswarm-identity`` document (both formats: node/sealed_keys.py). Both are readable
by their owner only (mode 0600); a file that others can access is refused. The passphrase
comes from ``[node] passphrase_file`` or ``MEDSWARM_PASSPHRASE`` (node/passphrase.py).

- A missing file is created with a fresh random key, encrypted with scrypt cost ``scrypt_n``
  (default 2**18, the v3 standard). Without a passphrase nothing is created and the error
  says how to give one: a new key is never written in the clear.
- An encrypted file is opened with the passphrase (the file records its own cost). A missing
  passphrase, a wrong one and an altered file are errors that name the file and say what to
  do.
- A plain file of 64 hex digits (what medswarm wrote before it encrypted keys) is still
  read. With a passphrase the node encrypts it in place (same path, atomically) and logs a
  warning saying so; without one it uses the key as it is and logs a warning saying how to
  give a passphrase, so that the next start encrypts it. The read-only loaders
  (:func:`load_account_key`, :func:`load_identity`) never change a file.

No key and no passphrase is ever logged or put into an error message.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair

from node.errors import KeyFileError, PassphraseError
from node.passphrase import Passphrase
from node.private_files import read_private_text, write_private_text
from node.sealed_keys import (
    DEFAULT_SCRYPT_N,
    KEY_BYTES,
    MalformedKeystore,
    WrongPassphrase,
    open_account_key,
    open_identity_seed,
    seal_account_key,
    seal_identity_seed,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SCRYPT_N",
    "load_account_key",
    "load_identity",
    "load_or_create_account_key",
    "load_or_create_identity",
    "write_account_key",
]


@dataclass(frozen=True)
class _KeyKind:
    what: str
    remedy: str
    seal: Callable[[bytes, str, int], dict[str, Any]]
    unseal: Callable[[Any, str], bytes]
    check: Callable[[bytes], object]  # raises ValueError for an unusable key


def _check_account(key: bytes) -> object:
    return Account.from_key(key)


ACCOUNT = _KeyKind(
    "Ethereum account key",
    "restore it from a backup, or delete it to make a new key (a new account must be "
    "admitted to the federation again)",
    seal_account_key,
    open_account_key,
    _check_account,
)
IDENTITY = _KeyKind(
    "libp2p identity seed",
    "restore it from a backup, or delete it to make a new identity (the node then registers "
    "its new peer id)",
    seal_identity_seed,
    open_identity_seed,
    create_new_key_pair,
)


def load_or_create_account_key(
    path: str | os.PathLike[str], passphrase: Passphrase, scrypt_n: int = DEFAULT_SCRYPT_N
) -> str:
    """The node's Ethereum private key (0x hex), created encrypted in ``path`` on first use."""
    return "0x" + _load_or_create(Path(path), ACCOUNT, passphrase, scrypt_n).hex()


def load_or_create_identity(
    path: str | os.PathLike[str], passphrase: Passphrase, scrypt_n: int = DEFAULT_SCRYPT_N
) -> KeyPair:
    """The node's libp2p Ed25519 identity, its seed created encrypted in ``path`` on first use."""
    return create_new_key_pair(_load_or_create(Path(path), IDENTITY, passphrase, scrypt_n))


def load_account_key(path: str | os.PathLike[str], passphrase: Passphrase) -> str:
    """The Ethereum private key (0x hex) in an existing key file, encrypted or plain hex.

    The file is never created or changed.
    """
    return "0x" + _read(_existing(Path(path), ACCOUNT), ACCOUNT, passphrase, None).hex()


def load_identity(path: str | os.PathLike[str], passphrase: Passphrase) -> KeyPair:
    """The libp2p identity in an existing identity file; the file is never changed."""
    seed = _read(_existing(Path(path), IDENTITY), IDENTITY, passphrase, None)
    return create_new_key_pair(seed)


def write_account_key(
    path: str | os.PathLike[str],
    key: str,
    passphrase: Passphrase,
    scrypt_n: int = DEFAULT_SCRYPT_N,
) -> None:
    """Store the private key ``key`` (hex) encrypted in the new file ``path``.

    An existing file is an error (:class:`KeyFileError`), never overwritten.
    """
    key_file = Path(path)
    try:
        raw = bytes.fromhex(key.removeprefix("0x"))
        _check_account(raw)
    except ValueError:
        raise KeyFileError("not a secp256k1 private key: give 64 hex digits") from None
    try:
        write_private_text(key_file, _encode(ACCOUNT, raw, passphrase, scrypt_n))
    except FileExistsError:
        raise KeyFileError(f"{key_file} already exists; it is never overwritten") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {key_file}: {exc}") from exc


def _existing(key_file: Path, kind: _KeyKind) -> Path:
    if not key_file.is_file():
        raise KeyFileError(
            f"{key_file} does not exist: give the file that holds the {kind.what} (a keystore "
            "or 64 hex digits, mode 0600)"
        )
    return key_file


def _load_or_create(key_file: Path, kind: _KeyKind, passphrase: Passphrase, scrypt_n: int) -> bytes:
    if not key_file.exists():
        if not passphrase.given:
            raise PassphraseError(
                f"no passphrase to encrypt a new {kind.what} in {key_file}: set "
                f"{passphrase.options} (keys are never written unencrypted)"
            )
        key = _new_key(kind)
        try:
            write_private_text(key_file, _encode(kind, key, passphrase, scrypt_n))
            logger.info(
                "created a new %s in %s, encrypted with the passphrase from %s",
                kind.what,
                key_file,
                passphrase.source,
            )
            return key
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError as exc:
            raise KeyFileError(
                f"cannot create {key_file} for the {kind.what}: {exc}; check that its "
                "directory is writable"
            ) from exc
    return _read(key_file, kind, passphrase, scrypt_n)


def _read(
    key_file: Path, kind: _KeyKind, passphrase: Passphrase, encrypt_with: int | None
) -> bytes:
    """The key in ``key_file``; a plain-hex file is encrypted with cost ``encrypt_with``
    when that is given and so is a passphrase."""
    text = read_private_text(key_file, f"the {kind.what}")
    if text.lstrip().startswith("{"):
        key = _decrypt(key_file, kind, passphrase, text)
    else:
        key = _plain_hex(key_file, kind, text)
    try:
        kind.check(key)
    except ValueError:
        raise KeyFileError(f"{key_file}: not a usable {kind.what}; {kind.remedy}") from None
    if text.lstrip().startswith("{"):
        return key
    if encrypt_with is not None:
        _encrypt_in_place(key_file, kind, key, passphrase, encrypt_with)
    else:
        logger.warning(
            "%s holds the %s unencrypted; better store it encrypted (a node encrypts its own "
            "key files in place when it starts with a passphrase)",
            key_file,
            kind.what,
        )
    return key


def _decrypt(key_file: Path, kind: _KeyKind, passphrase: Passphrase, text: str) -> bytes:
    try:
        document = json.loads(text)
    except ValueError:
        raise KeyFileError(
            f"{key_file} is not valid JSON, so not a {kind.what} keystore; {kind.remedy}"
        ) from None
    if not passphrase.given:
        raise PassphraseError(
            f"{key_file} holds an encrypted {kind.what} and no passphrase was given: set "
            f"{passphrase.options}"
        )
    try:
        return kind.unseal(document, passphrase.reveal())
    except WrongPassphrase:
        raise PassphraseError(
            f"wrong passphrase for {key_file} (it came from {passphrase.source}), or the "
            f"file was altered: check {passphrase.options}"
        ) from None
    except MalformedKeystore as exc:
        raise KeyFileError(
            f"{key_file} is not a readable {kind.what} keystore ({exc}); {kind.remedy}"
        ) from None


def _plain_hex(key_file: Path, kind: _KeyKind, text: str) -> bytes:
    digits = text.strip().removeprefix("0x").removeprefix("0X")
    try:
        key = bytes.fromhex(digits)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES or len(digits) != 2 * KEY_BYTES:
        raise KeyFileError(
            f"{key_file} does not hold a {kind.what} (an encrypted keystore, or "
            f"{2 * KEY_BYTES} hex digits, expected; found {len(text.strip())} characters); "
            f"{kind.remedy}"
        )
    return key


def _encrypt_in_place(
    key_file: Path, kind: _KeyKind, key: bytes, passphrase: Passphrase, scrypt_n: int
) -> None:
    if not passphrase.given:
        logger.warning(
            "%s holds the %s unencrypted: set %s and start again to have it encrypted",
            key_file,
            kind.what,
            passphrase.options,
        )
        return
    try:
        write_private_text(key_file, _encode(kind, key, passphrase, scrypt_n), replace=True)
    except OSError as exc:
        logger.warning(
            "%s holds the %s unencrypted and could not be encrypted in place (%s); "
            "going on with it as it is",
            key_file,
            kind.what,
            exc,
        )
        return
    logger.warning(
        "%s held the %s unencrypted; it is now encrypted with the passphrase from %s "
        "(destroy any copy of the old file)",
        key_file,
        kind.what,
        passphrase.source,
    )


def _new_key(kind: _KeyKind) -> bytes:
    while True:
        key = secrets.token_bytes(KEY_BYTES)
        try:
            kind.check(key)
        except ValueError:
            continue  # zero, or not below the secp256k1 group order: about 2**-128
        return key


def _encode(kind: _KeyKind, key: bytes, passphrase: Passphrase, scrypt_n: int) -> str:
    return json.dumps(kind.seal(key, passphrase.reveal(), scrypt_n)) + "\n"
