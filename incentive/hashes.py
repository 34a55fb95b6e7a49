"""Conversions for 32-byte hashes between the node's form and the chain's form.

medswarm's Python API writes a content hash as 64 lowercase hex digits without ``0x`` (what
``hashlib.sha256(...).hexdigest()`` gives); the chain takes ``bytes32``. Inputs may be raw
bytes or hex with or without ``0x``, in any case.
"""

from __future__ import annotations

HASH_BYTES = 32


def hash_bytes(value: bytes | str) -> bytes:
    """Return the 32 raw bytes of a hash given as bytes or hex (``0x`` optional)."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str):
        text = value[2:] if value[:2] in ("0x", "0X") else value
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"hash {value!r} is not hexadecimal") from None
    else:
        raise TypeError(f"a hash must be bytes or a hex string, not {type(value).__name__}")
    if len(raw) != HASH_BYTES:
        raise ValueError(f"hash {value!r} has {len(raw)} bytes, expected {HASH_BYTES}")
    return raw


def hash_hex(value: bytes | str) -> str:
    """Return a hash as 64 lowercase hex digits without ``0x``."""
    return hash_bytes(value).hex()
