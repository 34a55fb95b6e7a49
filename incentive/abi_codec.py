"""Decoding what contracts return: custom errors from revert data, events from logs.

Both decoders are built from the committed ABIs, so a revert surfaces with its Solidity error
name (``ClusterAlreadyRecorded``) and an event with its name and typed arguments.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

_PANIC_REASONS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x22: "bad storage byte array",
    0x31: "pop from empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to uninitialised function",
}
_ERROR_STRING_SELECTOR = keccak(text="Error(string)")[:4]
_PANIC_SELECTOR = keccak(text="Panic(uint256)")[:4]
_BYTES_LITERAL = re.compile(r"""b(['"]).*\1""", re.DOTALL)
_HEX_DATA = re.compile(r"0x[0-9a-fA-F]{8,}")


def canonical_type(param: Mapping[str, Any]) -> str:
    """The ABI type string of a parameter, expanding tuples."""
    type_str = str(param["type"])
    if type_str.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param["components"])
        return f"({inner}){type_str[len('tuple') :]}"
    return type_str


def signature(item: Mapping[str, Any]) -> str:
    """``Name(type1,type2)`` of an ABI error, event or function."""
    return f"{item['name']}({','.join(canonical_type(p) for p in item['inputs'])})"


def plain(value: Any, abi_type: str) -> Any:
    """A JSON-friendly form of a decoded value: bytes as 0x-hex, addresses checksummed."""
    if isinstance(value, list | tuple):
        element = abi_type[: abi_type.rindex("[")] if abi_type.endswith("]") else abi_type
        return [plain(v, element) for v in value]
    if abi_type == "address":
        return to_checksum_address(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


@dataclass(frozen=True)
class DecodedError:
    """A decoded revert: the error name and its named arguments (JSON-friendly)."""

    name: str
    args: dict[str, Any]


class ErrorDecoder:
    """Maps 4-byte selectors of the given ABIs' custom errors to decoded errors.

    Two contracts may declare the same error with other parameter names (one selector); the
    ABI given first wins, so put the contract that was called first.
    """

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]]) -> None:
        self._errors: dict[bytes, Mapping[str, Any]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") == "error":
                    self._errors.setdefault(keccak(text=signature(item))[:4], item)

    def decode(self, data: bytes) -> DecodedError | None:
        """Decode revert data; None when it is empty or matches nothing known."""
        selector, payload = data[:4], data[4:]
        try:
            if selector == _ERROR_STRING_SELECTOR:
                return DecodedError("Error", {"reason": abi_decode(["string"], payload)[0]})
            if selector == _PANIC_SELECTOR:
                code = int(abi_decode(["uint256"], payload)[0])
                return DecodedError(
                    "Panic", {"code": hex(code), "reason": _PANIC_REASONS.get(code, "unknown")}
                )
            item = self._errors.get(selector)
            if item is None:
                return None
            types = [canonical_type(p) for p in item["inputs"]]
            values = abi_decode(types, payload)
        except Exception:  # malformed payload: report it as undecodable
            return None
        args = {
            str(p["name"]) or f"arg{i}": plain(v, t)
            for i, (p, t, v) in enumerate(zip(item["inputs"], types, values, strict=True))
        }
        return DecodedError(str(item["name"]), args)


def revert_data(exc: BaseException) -> bytes | None:
    """Extract raw revert data from a web3 or eth-tester exception, if it carries any.

    JSON-RPC nodes give it as hex in ``exc.data``; the in-process tester only puts a Python
    bytes literal into the message (``execution reverted: b'...'``).
    """
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            pass
    if isinstance(data, bytes):
        return data
    for arg in exc.args:
        if isinstance(arg, bytes):
            return arg
        text = str(arg)
        literal = _BYTES_LITERAL.search(text)
        if literal is not None:
            try:
                value = ast.literal_eval(literal.group(0))
            except (ValueError, SyntaxError):
                value = None
            if isinstance(value, bytes):
                return value
        hex_match = _HEX_DATA.search(text)
        if hex_match is not None and len(hex_match.group(0)) % 2 == 0:
            return bytes.fromhex(hex_match.group(0)[2:])
    return None


@dataclass(frozen=True)
class DecodedEvent:
    """A decoded log before block metadata is attached."""

    contract: str
    event: str
    args: dict[str, Any]


class EventDecoder:
    """Decodes logs emitted by known contracts (by address) using their ABIs."""

    def __init__(self, contracts: Mapping[str, tuple[str, Sequence[Mapping[str, Any]]]]) -> None:
        """``contracts`` maps a contract address to (contract name, ABI)."""
        self._by_address: dict[str, tuple[str, dict[bytes, Mapping[str, Any]]]] = {}
        for address, (name, abi) in contracts.items():
            events = {
                keccak(text=signature(item)): item for item in abi if item.get("type") == "event"
            }
            self._by_address[address.lower()] = (name, events)

    @property
    def addresses(self) -> list[str]:
        """The checksummed addresses whose logs this decoder understands."""
        return [to_checksum_address(a) for a in self._by_address]

    def decode(self, address: str, topics: Sequence[bytes], data: bytes) -> DecodedEvent | None:
        """Decode one log; None when the address or event is unknown."""
        known = self._by_address.get(address.lower())
        if known is None or not topics:
            return None
        name, events = known
        item = events.get(bytes(topics[0]))
        if item is None:
            return None
        indexed = [p for p in item["inputs"] if p.get("indexed")]
        unindexed = [p for p in item["inputs"] if not p.get("indexed")]
        indexed_values = [
            abi_decode([canonical_type(p)], bytes(topic))[0]
            for p, topic in zip(indexed, topics[1:], strict=True)
        ]
        unindexed_types = [canonical_type(p) for p in unindexed]
        unindexed_values = list(abi_decode(unindexed_types, bytes(data)))
        values = {}
        indexed_iter = iter(indexed_values)
        unindexed_iter = iter(unindexed_values)
        for param in item["inputs"]:
            source = indexed_iter if param.get("indexed") else unindexed_iter
            values[str(param["name"])] = plain(next(source), canonical_type(param))
        return DecodedEvent(name, str(item["name"]), values)
