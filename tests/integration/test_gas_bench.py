"""``medswarm bench gas`` on the real in-process EVM: the figure, and its arithmetic."""

from __future__ import annotations

import json

import pytest

from medswarm import cli

pytestmark = pytest.mark.integration


def test_eight_hospitals_in_two_clusters_cost_at_most_20k_gas_each_per_round(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "gas", "--hospitals", "8", "--clusters", "2", "--rounds", "10", "--json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["round_gas"]) == 10 and len(result["baseline_round_gas"]) == 10
    assert result["gas_per_hospital_round"] == pytest.approx(sum(result["round_gas"]) / 80, abs=0.1)
    assert result["gas_per_hospital_round"] <= 20_000
    # every hospital attests on the Ledger, so the old path costs more than 5 times as much
    assert result["baseline_gas_per_hospital_round"] > 5 * result["gas_per_hospital_round"]
    assert result["quorum"] == 6  # ceil(2/3 of 8)


def test_bad_arguments_are_refused_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "gas", "--hospitals", "1", "--clusters", "2"]) == 2
    assert "at least one hospital per cluster" in capsys.readouterr().err
