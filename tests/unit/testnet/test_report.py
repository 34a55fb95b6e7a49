"""The launcher's round lines and summary: the privacy the nodes report."""

from __future__ import annotations

from typing import Any

from testnet.report import HospitalSummary, RunSummary, format_table, round_privacy, summarise_round


def event(node: str, **privacy: Any) -> dict[str, Any]:
    return {
        "event": "round",
        "round": 3,
        "node": node,
        "global_hash": "ab" * 32,
        "test_accuracy": 0.75,
        "test_loss": 0.5,
        "aggregator": "0x1",
        "update_hash": "cd" * 32,
        "samples": 100,
        "seconds": 1.0,
        **privacy,
    }


def test_a_round_line_carries_the_largest_epsilon_the_nodes_report() -> None:
    line = summarise_round(
        [
            event("a", epsilon=1.5, epsilon_round=0.9, delta=1e-5),
            event("b", epsilon=2.0, epsilon_round=0.9, delta=1e-5),
        ]
    )
    assert (line["epsilon"], line["delta"]) == (2.0, 1e-5)


def test_without_noise_epsilon_and_delta_are_none() -> None:
    assert round_privacy([event("a"), event("b")]) == {"epsilon": None, "delta": None}
    clipped_only = event("a", epsilon=None, epsilon_round=None, delta=None)
    assert round_privacy([clipped_only]) == {"epsilon": None, "delta": None}


def test_the_summary_table_states_the_privacy_spent() -> None:
    hospital = HospitalSummary("A", "a", "0x1", 100, 0.7, 0.75, 5, 10**18)
    summary = RunSummary(
        dataset="heart-disease",
        federation="f",
        seed=0,
        rounds=3,
        nodes_agree=True,
        final_global_hash="ab",
        final_model="m",
        final_mean_accuracy=0.75,
        mean_local_only_accuracy=0.7,
        seconds=1.0,
        hospitals=[hospital],
    )
    assert "differential privacy" not in format_table(summary)
    assert summary.to_json()["epsilon"] is None and summary.to_json()["delta"] is None
    private = RunSummary(**{**summary.__dict__, "epsilon": 3.25, "delta": 1e-5})
    assert "spent epsilon 3.250 at delta 1e-05" in format_table(private)
    assert private.to_json()["epsilon"] == 3.25
