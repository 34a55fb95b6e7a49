"""Secure aggregation on the real network: four Fed-Heart-Disease hospitals on real libp2p
hosts and the in-process EVM, rounds kept by the Consortium contract, each cluster's
aggregator learning only the sample-weighted sum of its members' updates."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import trio

import testnet.local
from gossip.messages import Announcement, AnnouncementKind
from node.aggregation import fedavg
from node.config import MedswarmConfig, with_overrides
from node.data import load_all_sites, resolve_data_dir
from node.errors import InvalidWeights
from node.hospital import HospitalNode
from node.learner import SiteLearner
from node.simulate import initial_weights
from node.weights import Weights, decode_weights, weights_hash
from testnet.local import LocalRun, run_local_federation
from testnet.report import RunSummary

pytestmark = pytest.mark.integration

NODES = 4
# Each member's values are rounded to 2^-20 before masking (and scaled by its share of the
# samples): a cluster's mean is off by at most 4 x 2^-21 per value and round, the models by
# a few times that after the rounds' steps.
TOLERANCE = 1e-5
MASKED_INPUT_HEADER = bytes([1, 3])  # version 1, kind MASKED_INPUT (node/secagg_messages.py)


def federate(
    out: Path,
    rounds: int,
    clusters: tuple[int, ...],
    update_timeout: float,
    secure: bool = True,
    **options: Any,
) -> RunSummary:
    torch.set_num_threads(1)
    config = with_overrides(
        MedswarmConfig(),
        rounds=rounds,
        update_timeout=update_timeout,
        ledger="consortium",
        secure_aggregation=secure,
    )
    local = LocalRun(
        config=config,
        nodes=NODES,
        data_dir=resolve_data_dir(None, os.environ),
        out_dir=out,
        clusters=clusters,
        **options,
    )
    return trio.run(run_local_federation, local)


def record_plain_updates(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, int], Weights]:
    """Every update the learners train, by (site, round), before anything is done to it."""
    trained: dict[tuple[str, int], Weights] = {}
    train = SiteLearner.train

    def recording(learner: SiteLearner, round_number: int) -> tuple[Weights, int]:
        update, samples = train(learner, round_number)
        trained[(learner.site.site, round_number)] = dict(update)
        return update, samples

    monkeypatch.setattr(SiteLearner, "train", recording)
    return trained


def in_memory_global(
    rounds: int, clusters: tuple[int, ...], left_out: Sequence[str] = ()
) -> Weights:
    """The global model by a second route: the learners in memory, each cluster's FedAvg of
    its members' updates (without ``left_out``'s), then the clusters' combination."""
    sites = load_all_sites("heart-disease", resolve_data_dir(None, os.environ))[:NODES]
    config = MedswarmConfig()
    genesis = initial_weights(sites, config.federation.seed)
    learners = [
        SiteLearner(site, config.training, config.strategy, config.federation.seed, genesis)
        for site in sites
    ]
    new: Weights = {}
    for round_number in range(1, rounds + 1):
        updates = [learner.train(round_number) for learner in learners]
        parts = []
        for cluster in sorted(set(clusters)):
            taken = [
                update
                for update, learner, c in zip(updates, learners, clusters, strict=True)
                if c == cluster and learner.site.site not in left_out
            ]
            parts.append((fedavg(taken), sum(samples for _, samples in taken)))
        new = learners[0].next_global(parts, NODES)
        for learner in learners:
            learner.adopt(new, round_number)
    return new


def assert_close(found: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    assert sorted(found) == sorted(expected)
    for name in expected:
        np.testing.assert_allclose(found[name], expected[name], rtol=0, atol=TOLERANCE)


def events(out: Path, name: str) -> list[dict[str, Any]]:
    lines = (out / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def blobs(out: Path, site: str) -> dict[str, bytes]:
    directory = out / "nodes" / site / "blobs"
    return {
        path.name: path.read_bytes()
        for path in directory.iterdir()
        if re.fullmatch(r"[0-9a-f]{64}", path.name)
    }


def test_clusters_aggregate_securely_to_the_in_memory_model_and_never_see_an_update(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds, clusters = 3, (0, 0, 1, 1)
    trained = record_plain_updates(monkeypatch)
    summary = federate(tmp_path, rounds, clusters, update_timeout=10.0)
    monkeypatch.undo()
    assert summary.nodes_agree
    final = decode_weights(Path(summary.final_model).read_bytes())
    assert_close(final, in_memory_global(rounds, clusters))

    # No node holds any member's plain update; every update it fetched is a masked input.
    assert len(trained) == NODES * rounds
    plain = {weights_hash(update) for update in trained.values()}
    announced = {e["update_hash"] for e in events(tmp_path, "round")}
    assert len(announced) == NODES * rounds
    for hospital in summary.hospitals:
        held = blobs(tmp_path, hospital.site)
        assert not plain & set(held)
        others = announced & set(held)
        assert others  # at least the last rounds' masked inputs (older ones are pruned)
        for digest in others:
            assert held[digest][:2] == MASKED_INPUT_HEADER
            with pytest.raises(InvalidWeights):
                decode_weights(held[digest])
    aggregated = events(tmp_path, "aggregated")
    assert sorted((e["round"], e["cluster"]) for e in aggregated) == [
        (r, c) for r in range(1, rounds + 1) for c in (0, 1)
    ]
    assert all(e["inputs"] == 2 and e["secure"]["dropped"] == [] for e in aggregated)


def drop_after_masking(node: HospitalNode) -> None:
    """Make ``node`` deal its shares and mask its update, then go silent: its masked input
    and its answers never leave it."""
    publish = node.gossip.publish
    silenced = (AnnouncementKind.UPDATE, AnnouncementKind.SECAGG_ANSWER)

    async def publish_until_masked(announcement: Announcement) -> None:
        if announcement.kind not in silenced:
            await publish(announcement)

    node.gossip.publish = publish_until_masked  # type: ignore[method-assign]


def test_a_member_dropping_after_masking_leaves_the_survivors_mean(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rounds, clusters = 2, (0, 0, 0, 0)
    monkeypatch.setattr(testnet.local, "withhold_updates", drop_after_masking)
    summary = federate(tmp_path, rounds, clusters, update_timeout=5.0, silent_sites=("va",))
    monkeypatch.undo()
    assert summary.nodes_agree
    va = next(h for h in summary.hospitals if h.site == "va").address.lower()
    aggregated = events(tmp_path, "aggregated")
    assert [(e["round"], e["inputs"], e["secure"]["dropped"]) for e in aggregated] == [
        (r, 3, [va]) for r in range(1, rounds + 1)
    ]
    final = decode_weights(Path(summary.final_model).read_bytes())
    assert_close(final, in_memory_global(rounds, clusters, left_out=("va",)))
