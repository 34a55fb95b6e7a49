"""Deployment JSON round trip and validation."""

from __future__ import annotations

import pytest

from incentive.deployment import Deployment

REGISTRY = "0xf2e246bb76df876cef8b38ae84130f4f55de395b"


def deployment() -> Deployment:
    return Deployment(
        chain_id=31337,
        registry=REGISTRY,
        ledger="0x2946259E0334f33A064106302415aD3391BeD384",
        rewards="0xDe09E74d4888Bc4e65F589e8c13Bce9F71DdF4c7",
        admin="0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf",
        registry_block=1,
        ledger_block=2,
        rewards_block=3,
        registry_tx="0x" + "01" * 32,
    )


def test_json_round_trip_keeps_every_field() -> None:
    original = deployment()

    assert Deployment.from_json(original.to_json()) == original
    assert original.registry == "0xF2E246BB76DF876Cef8b38ae84130F4F55De395b"
    assert original.start_block == 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not JSON"),
        ('{"chain_id": 1}', "not a deployment record"),
        ('{"format": "medswarm-deployment/1", "chain_id": 1}', "bad deployment record"),
    ],
)
def test_bad_records_raise_value_error(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        Deployment.from_json(text)


def test_addresses_are_validated() -> None:
    with pytest.raises(ValueError, match="registry"):
        Deployment(1, "0x12", REGISTRY, REGISTRY, REGISTRY, 0)
