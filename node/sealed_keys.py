"""The encrypted forms of a node's two secret keys (no file I/O: node/keystore.py keeps the files).

The Ethereum account key is a Web3 Secret Storage (version 3) keystore, the JSON that geth,
Foundry and eth-account write and read: scrypt turns the passphrase into a key, AES-128-CTR
encrypts the private key, a Keccak-256 MAC checks the passphrase.

The libp2p identity is a 32-byte Ed25519 seed, not a secp256k1 key, so it has a format of its
own, ``medswarm-identity`` version 1 (one JSON object)::

    {"format": "medswarm-identity", "version": 1, "peer_id": "12D3KooW...",
     "kdf": "scrypt", "kdfparams": {"n": 262144, "r": 8, "p": 1, "salt": "<16 bytes, hex>"},
     "cipher": "aes-256-gcm", "nonce": "<12 bytes, hex>", "ciphertext": "<48 bytes, hex>"}

scrypt(passphrase as UTF-8, salt, n, r, p) gives a 32-byte AES-256-GCM key; the ciphertext is
the encrypted seed followed by GCM's 16-byte tag. Every other field, serialised as JSON with
sorted keys and no spaces, is GCM's associated data, so a changed peer id, cost or version
fails like a wrong passphrase. The peer id is public: it tells whose identity a file holds
without the passphrase.

Both formats record their scrypt cost, so a file written with a lighter cost (the testnet's)
still opens. Costs beyond :data:`MAX_SCRYPT_N` (a file made to exhaust memory) are refused.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
from eth_account import Account
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

KEY_BYTES = 32
DEFAULT_SCRYPT_N = 2**18  # the v3 standard: about 0.75 s and 256 MiB per file on one core
LIGHT_SCRYPT_N = 2**12  # geth's "light" cost: for a testnet's throwaway keys only
MIN_SCRYPT_N = 2**10
MAX_SCRYPT_N = 2**20
SCRYPT_R = 8
SCRYPT_P = 1
IDENTITY_FORMAT = "medswarm-identity"
IDENTITY_VERSION = 1
_MAX_SCRYPT_MEMORY = 128 * SCRYPT_R * MAX_SCRYPT_N  # bytes: 1 GiB
_MAX_SCRYPT_WORK = 2**24  # n * r * p; the standard cost is 2**21
_MAX_PBKDF2_ROUNDS = 10_000_000
_SALT_BYTES = 16
_NONCE_BYTES = 12
_IDENTITY_FIELDS = {
    "format",
    "version",
    "peer_id",
    "kdf",
    "kdfparams",
    "cipher",
    "nonce",
    "ciphertext",
}


class MalformedKeystore(ValueError):
    """The document is not a keystore of the expected format (or asks for too much work)."""


class WrongPassphrase(ValueError):
    """The passphrase does not open the keystore, or the keystore was altered."""


def check_scrypt_n(n: int) -> None:
    """Raise ValueError unless ``n`` is a power of two from MIN_SCRYPT_N to MAX_SCRYPT_N."""
    if not (MIN_SCRYPT_N <= n <= MAX_SCRYPT_N and n & (n - 1) == 0):
        raise ValueError(
            f"scrypt cost n = {n}: give a power of two from {MIN_SCRYPT_N} to {MAX_SCRYPT_N} "
            f"(the standard is {DEFAULT_SCRYPT_N})"
        )


# ------------------------------------------------------------------ Ethereum account key


def seal_account_key(key: bytes, passphrase: str, scrypt_n: int) -> dict[str, Any]:
    """A v3 keystore of the secp256k1 private key ``key``."""
    check_scrypt_n(scrypt_n)
    return dict(Account.encrypt(key, passphrase, kdf="scrypt", iterations=scrypt_n))


def open_account_key(document: Any, passphrase: str) -> bytes:
    """The private key in the v3 keystore ``document``."""
    if not isinstance(document, dict) or document.get("version") != 3:
        raise MalformedKeystore("not a version 3 Web3 Secret Storage keystore")
    crypto = document.get("crypto", document.get("Crypto"))
    if not isinstance(crypto, dict) or crypto.get("cipher") != "aes-128-ctr":
        raise MalformedKeystore('no "crypto" object with cipher "aes-128-ctr"')
    _check_v3_cost(crypto.get("kdf"), crypto.get("kdfparams"))
    try:
        key = bytes(Account.decrypt(document, passphrase))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPassphrase("the MAC does not match") from None
        raise MalformedKeystore(f"cannot decrypt: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise MalformedKeystore(f"a field is missing or has the wrong type ({exc})") from None
    if len(key) != KEY_BYTES:
        raise MalformedKeystore(f"it holds {len(key)} bytes, not a {KEY_BYTES}-byte key")
    recorded = document.get("address")
    if isinstance(recorded, str) and recorded:
        try:
            actual = str(Account.from_key(key).address)
        except ValueError:
            raise MalformedKeystore("it holds no valid secp256k1 private key") from None
        if recorded.lower().removeprefix("0x") != actual.lower().removeprefix("0x"):
            raise MalformedKeystore("the key inside does not belong to its address field")
    return key


def _check_v3_cost(kdf: Any, params: Any) -> None:
    if not isinstance(params, dict) or params.get("dklen") != KEY_BYTES:
        raise MalformedKeystore(f'no "kdfparams" object with dklen {KEY_BYTES}')
    if kdf == "scrypt":
        _check_scrypt_cost(params.get("n"), params.get("r"), params.get("p"))
    elif kdf == "pbkdf2":
        rounds = params.get("c")
        if params.get("prf") != "hmac-sha256" or not isinstance(rounds, int) or rounds < 1:
            raise MalformedKeystore("pbkdf2 needs prf hmac-sha256 and a positive round count")
        if rounds > _MAX_PBKDF2_ROUNDS:
            raise MalformedKeystore(f"pbkdf2 with {rounds} rounds is more than we will do")
    else:
        raise MalformedKeystore(f"unknown key derivation function {kdf!r}")


def _check_scrypt_cost(n: Any, r: Any, p: Any) -> tuple[int, int, int]:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in (n, r, p)):
        raise MalformedKeystore("scrypt parameters n, r, p must be positive integers")
    if n & (n - 1) or n < 2:
        raise MalformedKeystore(f"scrypt n = {n} is not a power of two")
    if 128 * n * r > _MAX_SCRYPT_MEMORY or n * r * p > _MAX_SCRYPT_WORK:
        raise MalformedKeystore(f"scrypt n={n}, r={r}, p={p} costs more than we will spend")
    return n, r, p


# ------------------------------------------------------------------- libp2p identity seed


def peer_id_of(seed: bytes) -> str:
    """The libp2p peer id of the Ed25519 identity with this seed."""
    return str(ID.from_pubkey(create_new_key_pair(seed).public_key).to_base58())


def seal_identity_seed(seed: bytes, passphrase: str, scrypt_n: int) -> dict[str, Any]:
    """A ``medswarm-identity`` document holding the Ed25519 seed ``seed``."""
    check_scrypt_n(scrypt_n)
    if len(seed) != KEY_BYTES:
        raise ValueError(f"an identity seed has {KEY_BYTES} bytes, not {len(seed)}")
    salt, nonce = secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(_NONCE_BYTES)
    header: dict[str, Any] = {
        "format": IDENTITY_FORMAT,
        "version": IDENTITY_VERSION,
        "peer_id": peer_id_of(seed),
        "kdf": "scrypt",
        "kdfparams": {"n": scrypt_n, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt.hex()},
        "cipher": "aes-256-gcm",
        "nonce": nonce.hex(),
    }
    key = _scrypt(passphrase, salt, scrypt_n, SCRYPT_R, SCRYPT_P)
    ciphertext = AESGCM(key).encrypt(nonce, seed, _associated_data(header))
    return {**header, "ciphertext": ciphertext.hex()}


def open_identity_seed(document: Any, passphrase: str) -> bytes:
    """The Ed25519 seed in the ``medswarm-identity`` document."""
    if not isinstance(document, dict) or document.get("format") != IDENTITY_FORMAT:
        raise MalformedKeystore(f'not a "{IDENTITY_FORMAT}" keystore')
    if document.get("version") != IDENTITY_VERSION:
        raise MalformedKeystore(
            f"{IDENTITY_FORMAT} version {document.get('version')!r}; this medswarm reads "
            f"version {IDENTITY_VERSION}"
        )
    if set(document) != _IDENTITY_FIELDS:
        raise MalformedKeystore(f"fields must be exactly {', '.join(sorted(_IDENTITY_FIELDS))}")
    params = document["kdfparams"]
    if (
        document["kdf"] != "scrypt"
        or document["cipher"] != "aes-256-gcm"
        or not isinstance(params, dict)
        or set(params) != {"n", "r", "p", "salt"}
    ):
        raise MalformedKeystore('expected kdf "scrypt" (n, r, p, salt) and cipher "aes-256-gcm"')
    n, r, p = _check_scrypt_cost(params["n"], params["r"], params["p"])
    salt = _hex_field(params["salt"], "salt", None)
    nonce = _hex_field(document["nonce"], "nonce", _NONCE_BYTES)
    ciphertext = _hex_field(document["ciphertext"], "ciphertext", KEY_BYTES + 16)
    header = {name: value for name, value in document.items() if name != "ciphertext"}
    key = _scrypt(passphrase, salt, n, r, p)
    try:
        seed = AESGCM(key).decrypt(nonce, ciphertext, _associated_data(header))
    except InvalidTag:
        raise WrongPassphrase("the authentication tag does not match") from None
    if peer_id_of(seed) != document["peer_id"]:
        raise MalformedKeystore("the seed inside does not give its peer_id field")
    return seed


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _associated_data(header: dict[str, Any]) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _hex_field(value: Any, name: str, size: int | None) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        raw = None
    if raw is None or (size is not None and len(raw) != size) or not raw:
        expected = f"{size} bytes" if size else "bytes"
        raise MalformedKeystore(f"{name} must be hex ({expected})")
    return raw
