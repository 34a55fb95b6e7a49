"""``medswarm bench gossip`` with three real node processes, small blobs and two rounds."""

from __future__ import annotations

import json

import pytest

from medswarm.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_every_node_ends_each_round_with_every_blob(capsys: pytest.CaptureFixture[str]) -> None:
    nodes, rounds, paths = 3, 2, 2

    code = main(["bench", "gossip", "--nodes", "3", "--size-mib", "1", "--rounds", "2", "--json"])

    assert code == 0
    result = json.loads(capsys.readouterr().out)
    # Every node verified every node's blob, in every round, on both paths.
    assert result["blobs_verified"] == nodes * nodes * rounds * paths
    assert (result["nodes"], result["size_mib"], result["rounds"]) == (3, 1.0, rounds - 1)
    for key in ("round_seconds", "baseline_round_seconds", "cpu_seconds", "baseline_cpu_seconds"):
        assert result[key] > 0
