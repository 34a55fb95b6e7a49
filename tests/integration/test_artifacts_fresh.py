"""The committed contract artifacts are exactly what the Solidity sources compile to."""

from __future__ import annotations

import pytest

from contracts.compile import ARTIFACTS_DIR, compile_sources, stale_artifacts
from incentive.errors import CompilerNotFound

pytestmark = pytest.mark.integration


def test_committed_artifacts_match_the_sources() -> None:
    try:
        artifacts = compile_sources()
    except CompilerNotFound as exc:
        pytest.fail(f"no Solidity compiler to check the artifacts with; run make setup ({exc})")

    stale = stale_artifacts(artifacts, ARTIFACTS_DIR)

    assert not stale, f"stale artifacts {stale}: run `python -m contracts.compile` and commit"
    assert set(artifacts) == {
        "Registry",
        "Ledger",
        "RewardPool",
        "Consortium",
        "EpochRewards",
        "RewardToken",
    }
