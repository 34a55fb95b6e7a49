"""A node's two secret keys, each in its own file: the Ethereum account key and the libp2p
identity.

Both files hold 64 hex digits (32 bytes) and a newline, readable by the owner only (mode
0600). The account key signs transactions and announcements; the identity is an Ed25519 seed
from which the node's libp2p peer id follows, so the peer id registered on chain stays the
same across restarts. A missing file is created with a fresh random key; an existing file
that others can read, or that does not hold a key, is refused.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from eth_account import Account
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair

from node.errors import KeyFileError

logger = logging.getLogger(__name__)

KEY_BYTES = 32
FILE_MODE = 0o600
_TOO_OPEN = stat.S_IRWXG | stat.S_IRWXO
_ACCOUNT_REMEDY = (
    "restore it from a backup, or delete it to make a new key (a new account must be admitted "
    "to the federation again)"
)
_IDENTITY_REMEDY = (
    "restore it from a backup, or delete it to make a new identity (the node then registers "
    "its new peer id)"
)


def load_or_create_account_key(path: str | os.PathLike[str]) -> str:
    """The node's Ethereum private key (0x hex), created in ``path`` on first use."""
    key_file = Path(path)
    seed = _load_or_create(key_file, "Ethereum account key", _ACCOUNT_REMEDY)
    try:
        account = Account.from_key(seed)
    except Exception as exc:  # zero, or not below the secp256k1 group order
        raise KeyFileError(
            f"{key_file}: not a valid secp256k1 private key ({exc}); {_ACCOUNT_REMEDY}"
        ) from exc
    return "0x" + bytes(account.key).hex()


def load_or_create_identity(path: str | os.PathLike[str]) -> KeyPair:
    """The node's libp2p Ed25519 identity, whose seed is created in ``path`` on first use."""
    key_file = Path(path)
    seed = _load_or_create(key_file, "libp2p identity seed", _IDENTITY_REMEDY)
    try:
        return create_new_key_pair(seed)
    except ValueError as exc:
        raise KeyFileError(
            f"{key_file}: not a usable Ed25519 seed ({exc}); {_IDENTITY_REMEDY}"
        ) from exc


def _load_or_create(key_file: Path, what: str, remedy: str) -> bytes:
    if not key_file.exists():
        try:
            _create(key_file, secrets.token_bytes(KEY_BYTES))
            logger.info("created a new %s in %s", what, key_file)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError as exc:
            raise KeyFileError(
                f"cannot create {key_file} for the {what}: {exc}; check that its directory "
                "is writable"
            ) from exc
    return _read(key_file, what, remedy)


def _read(key_file: Path, what: str, remedy: str) -> bytes:
    try:
        mode = key_file.stat().st_mode
        if mode & _TOO_OPEN:
            raise KeyFileError(
                f"{key_file} holds a secret key but other users may access it (mode "
                f"{stat.S_IMODE(mode):03o}); run `chmod 600 {key_file}`"
            )
        text = key_file.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{key_file}: cannot read the {what}: {exc}") from exc
    digits = text.removeprefix("0x").removeprefix("0X")
    try:
        seed = bytes.fromhex(digits)
    except ValueError:
        seed = b""
    if len(seed) != KEY_BYTES or len(digits) != 2 * KEY_BYTES:
        raise KeyFileError(
            f"{key_file} does not hold a {what} ({2 * KEY_BYTES} hex digits expected, found "
            f"{len(text)} characters); {remedy}"
        )
    return seed


def _create(key_file: Path, seed: bytes) -> None:
    """Write ``seed`` so the file appears complete or not at all, never readable by others."""
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = key_file.with_name(f".{key_file.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(seed.hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(partial, key_file)  # fails if the key file appeared meanwhile
    finally:
        partial.unlink(missing_ok=True)
