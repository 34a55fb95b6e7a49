"""Decoding custom errors and events with the committed ABIs."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils import keccak

from contracts import load_artifact
from incentive.abi_codec import ErrorDecoder, EventDecoder, revert_data

A = "0x2B5AD5c4795c026514f8317c7a215E218DcCD6cF"
B = "0x6813Eb9362372EEF6200f3b1dbC3f819671cBA69"
LEDGER_ABI = load_artifact("Ledger").abi


def selector(signature: str) -> bytes:
    return bytes(keccak(text=signature)[:4])


def test_custom_error_is_decoded_with_named_arguments() -> None:
    data = selector("ClusterAlreadyRecorded(uint64,uint16)") + encode(["uint64", "uint16"], [7, 2])

    decoded = ErrorDecoder([LEDGER_ABI]).decode(data)

    assert decoded is not None
    assert decoded.name == "ClusterAlreadyRecorded"
    assert decoded.args == {"round": 7, "cluster": 2}


def test_standard_errors_and_unknown_selectors() -> None:
    decoder = ErrorDecoder([LEDGER_ABI])
    reason = decoder.decode(selector("Error(string)") + encode(["string"], ["boom"]))
    panic = decoder.decode(selector("Panic(uint256)") + encode(["uint256"], [0x11]))

    assert reason is not None and reason.args == {"reason": "boom"}
    assert panic is not None and panic.args["reason"] == "arithmetic overflow or underflow"
    assert decoder.decode(b"\x12\x34\x56\x78") is None
    assert decoder.decode(b"") is None


class RpcStyleError(Exception):
    def __init__(self, message: str, data: str) -> None:
        super().__init__(message)
        self.data = data


def test_revert_data_from_rpc_and_tester_exceptions() -> None:
    raw = selector("NoRecords()")

    assert revert_data(RpcStyleError("execution reverted", "0x" + raw.hex())) == raw
    assert revert_data(Exception(f"execution reverted: {raw!r}")) == raw
    assert revert_data(Exception("execution reverted")) is None


def test_event_decoder_decodes_indexed_and_data_fields() -> None:
    decoder = EventDecoder({B: ("Ledger", LEDGER_ABI)})
    topics = [
        keccak(text="UpdateRecorded(uint64,address,bytes32,uint64,uint64)"),
        encode(["uint64"], [3]),
        encode(["address"], [A]),
    ]
    data = encode(["bytes32", "uint64", "uint64"], [b"\xab" * 32, 100, 7])

    event = decoder.decode(B.lower(), topics, data)

    assert event is not None
    assert (event.contract, event.event) == ("Ledger", "UpdateRecorded")
    assert event.args == {
        "round": 3,
        "member": A,
        "updateHash": "0x" + "ab" * 32,
        "samples": 100,
        "score": 7,
    }
    assert decoder.decode(A, topics, data) is None  # not a known contract
