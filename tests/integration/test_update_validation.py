"""Members validating each other's updates on their own rows, on the real network.

Eight nodes (each Fed-Heart-Disease site split in two) on real libp2p hosts and the in-process
EVM in the demo's setting, with ``federation.validate_updates`` on and geometric screening
off, so that what rejects an update here is the validation alone (node/validation.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import trio

from incentive.consortium_audit import audit_events
from incentive.events import EventLog
from node.config import load_config, with_overrides
from node.data import resolve_data_dir
from testnet.local import LocalRun, run_local_federation
from testnet.report import RunSummary

pytestmark = pytest.mark.integration

DEMO = Path(__file__).parents[2] / "testnet" / "demo.toml"
CLUSTERS = (0, 0, 1, 1, 1, 1, 0, 0)  # cleveland-1/2, hungarian-1/2, switzerland-1/2, va-1/2


def events(out: Path, name: str) -> list[dict[str, Any]]:
    lines = (out / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def validating_federation(out: Path, **run: Any) -> RunSummary:
    """Two rounds of the demo's setting with update validation on, on real hosts."""
    torch.set_num_threads(1)
    config = with_overrides(load_config(DEMO), rounds=2, update_timeout=10.0, validate_updates=True)
    local = LocalRun(config=config, data_dir=resolve_data_dir(None, os.environ), out_dir=out, **run)
    return trio.run(run_local_federation, local)


def test_an_update_trained_on_flipped_labels_is_rejected_by_the_members_losses(
    tmp_path: Path,
) -> None:
    summary = validating_federation(
        tmp_path,
        nodes=8,
        shards=2,
        clusters=CLUSTERS,
        attack="label-flip",
        attackers=("cleveland-2",),
    )
    flipper = next(h for h in summary.hospitals if h.site == "cleveland-2")
    # Round 1 pools feature statistics and is not validated; round 2 trains.
    checks = events(tmp_path, "validation")
    assert sorted((e["round"], e["cluster"]) for e in checks) == [(2, 0), (2, 1)]
    assert all(e["evaluators"] == 8 for e in checks)
    cluster_0 = next(e for e in checks if e["cluster"] == 0)
    increase = cluster_0["loss_increase"]
    assert max(increase, key=increase.get) == flipper.address.lower()
    assert (
        increase[flipper.address.lower()]
        > 0.4
        > max(x for s, x in increase.items() if s != flipper.address.lower())
    )
    rejected = events(tmp_path, "excluded")
    assert [(e["round"], e["member"]) for e in rejected] == [(2, flipper.address)]
    assert "its step raises the other members' loss" in rejected[0]["reason"]
    audit = audit_events(EventLog.read_jsonl(tmp_path / "chain" / "events.jsonl").records())
    assert audit.ok, audit.problems
    member = next(m for m in audit.members.values() if m.account == flipper.address)
    assert member.reputation == 7500  # one rejection: a quarter of the way to 0
    assert summary.nodes_agree


def test_validating_members_leave_out_an_update_that_is_not_valid_weights(tmp_path: Path) -> None:
    summary = validating_federation(tmp_path, nodes=4, attack="nan", attackers=("va",))
    va = next(h for h in summary.hospitals if h.site == "va").address.lower()
    # every member fetches va's NaN update to validate it, leaves it out and goes on to
    # gossip its measures of the others (three updates: too few for a verdict)
    checks = events(tmp_path, "validation")
    assert [(e["round"], e["evaluators"], e["z_scores"]) for e in checks] == [(2, 4, {})]
    rejected = events(tmp_path, "excluded")
    assert [(e["round"], e["member"].lower()) for e in rejected] == [(1, va), (2, va)]
    assert summary.nodes_agree and 0.5 < summary.final_mean_accuracy < 1.0
