"""Byte-level edits of valid encodings, shared by the fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st

BYTE_EDITS = ("flip", "delete", "insert", "truncate")


def edit_bytes(draw: st.DrawFn, data: bytearray, edit: str, position: int) -> None:
    """Apply one edit of :data:`BYTE_EDITS` at ``position``: flip a bit, delete or insert up
    to 8 bytes, or cut everything from there on."""
    if edit == "flip" and position < len(data):
        data[position] ^= 1 << draw(st.integers(min_value=0, max_value=7))
    elif edit == "delete":
        del data[position : position + draw(st.integers(min_value=1, max_value=8))]
    elif edit == "insert":
        data[position:position] = draw(st.binary(min_size=1, max_size=8))
    elif edit == "truncate":
        del data[position:]
