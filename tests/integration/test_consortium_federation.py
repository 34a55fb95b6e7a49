"""Hospital nodes keeping their rounds in the Consortium contract (``federation.ledger =
"consortium"``): real libp2p hosts, the real in-process EVM, PyTorch on Fed-Heart-Disease.

Cluster commitments and attestations travel as signed gossip; one ``finalizeRound`` per round
carries them to the chain, where an auditor replays everything from the events.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import trio
from member_order import in_address_order

from incentive.consortium_audit import audit_events
from incentive.events import EventLog
from medswarm.cli import main
from node.config import MedswarmConfig, with_overrides
from node.data import load_all_sites, resolve_data_dir
from node.simulate import fedavg_round, initial_weights
from node.weights import weights_hash
from testnet.local import LocalRun, run_local_federation
from testnet.report import RunSummary

pytestmark = pytest.mark.integration

ROUNDS = 3
CLUSTERS = (0, 1, 1, 0)


def federate(
    out: Path, rounds: int, ledger: str, contribution: str = "loss", **options: Any
) -> RunSummary:
    torch.set_num_threads(1)
    config = with_overrides(
        MedswarmConfig(),
        rounds=rounds,
        update_timeout=10.0,
        ledger=ledger,
        contribution=contribution,
    )
    local = LocalRun(
        config=config, nodes=4, data_dir=resolve_data_dir(None, os.environ), out_dir=out, **options
    )
    return trio.run(run_local_federation, local)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def chain_events(out: Path) -> EventLog:
    return EventLog.read_jsonl(out / "chain" / "events.jsonl")


def named(log: EventLog, name: str) -> list[Any]:
    return [e for e in log.records() if e.event == name]


@pytest.fixture(scope="module")
def clustered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunSummary]:
    out = tmp_path_factory.mktemp("consortium")
    return out, federate(out, ROUNDS, "consortium", clusters=CLUSTERS)


def test_every_round_is_final_on_chain_with_the_nodes_hash(
    clustered: tuple[Path, RunSummary],
) -> None:
    out, summary = clustered
    rounds = read_jsonl(out / "rounds.jsonl")
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["nodes_agree"] for r in rounds)
    finals = named(chain_events(out), "RoundFinalized")
    assert [int(e.args["round"]) for e in finals] == [1, 2, 3]
    assert [str(e.args["globalHash"]).removeprefix("0x") for e in finals] == [
        r["global_hash"] for r in rounds
    ]
    # one transaction per round, each carrying both clusters' commitments
    assert len({e.transaction_hash for e in finals}) == ROUNDS
    committed = named(chain_events(out), "ClusterCommitted")
    assert sorted((int(e.args["round"]), int(e.args["cluster"])) for e in committed) == [
        (r, c) for r in (1, 2, 3) for c in (0, 1)
    ]
    assert summary.chain["consortium"] and "ledger" not in summary.chain


def test_the_same_model_as_the_ledger_path(
    clustered: tuple[Path, RunSummary], tmp_path: Path
) -> None:
    _, consortium = clustered
    ledger = federate(tmp_path, ROUNDS, "ledger", clusters=CLUSTERS)
    assert consortium.final_global_hash == ledger.final_global_hash


def test_the_records_name_every_hospitals_update(clustered: tuple[Path, RunSummary]) -> None:
    out, summary = clustered
    announced = {
        (e["round"], e["address"].lower()): e["update_hash"]
        for e in read_jsonl(out / "events.jsonl")
        if e["event"] == "round"
    }
    audit = audit_events(chain_events(out).records())
    assert not audit.problems, audit.problems
    recorded = {}
    for round_record in audit.rounds:
        for cluster in round_record.clusters:
            for record in cluster.records:
                account = record.account.lower()
                recorded[(round_record.round, account)] = record.update_hash
                assert not record.rejected
    assert recorded == announced
    # the pool paid out all it was funded, by contribution (reputation all 10,000)
    assert sum(h.reward_wei for h in summary.hospitals) <= 10 * 10**18
    assert all(h.contribution > 0 and h.reward_wei > 0 for h in summary.hospitals)


def test_one_cluster_equals_in_memory_fedavg(tmp_path: Path) -> None:
    summary = federate(tmp_path, 2, "consortium")
    sites = load_all_sites("heart-disease", resolve_data_dir(None, os.environ))
    sites = in_address_order(sites, summary.hospitals)
    config = MedswarmConfig()
    weights = initial_weights(sites, config.federation.seed)
    for index in range(2):
        weights = fedavg_round(weights, sites, config.training, config.federation.seed, index)
    assert weights_hash(weights) == summary.final_global_hash


def test_a_member_sending_nan_updates_is_excluded_and_ignored(tmp_path: Path) -> None:
    summary = federate(tmp_path, 5, "consortium", nan_update_sites=("va",))
    log = chain_events(tmp_path)
    audit = audit_events(log.records())
    assert not audit.problems, audit.problems
    va = next(m for m in audit.members.values() if m.name == "VA Long Beach")
    # two rejected records from 10,000: 7,500, 5,625 < 6,000 -> excluded in round 2
    excluded = named(log, "MemberExcluded")
    assert [(int(e.args["index"]), int(e.args["round"])) for e in excluded] == [(va.index, 2)]
    flags = {}
    for round_record in audit.rounds:
        for cluster in round_record.clusters:
            for record in cluster.records:
                flags.setdefault(round_record.round, {})[record.member] = record.rejected
    assert [flags[r].get(va.index) for r in (1, 2, 3, 4, 5)] == [True, True, None, None, None]
    # the honest three finished every round on one model, without it
    rounds = read_jsonl(tmp_path / "rounds.jsonl")
    assert [r["round"] for r in rounds] == [1, 2, 3, 4, 5]
    assert all(r["nodes_agree"] for r in rounds)
    assert sorted(rounds[-1]["nodes"]) == ["cleveland", "hungarian", "switzerland"]
    left = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["event"] == "left-federation"]
    assert [e["node"] for e in left] == ["va"]
    assert "excluded" in left[0]["reason"]
    by_site = {h.site: h for h in summary.hospitals}
    assert by_site["va"].contribution == 0 and by_site["va"].reward_wei == 0
    assert all(by_site[s].reward_wei > 0 for s in ("cleveland", "hungarian", "switzerland"))


def test_the_audit_commands_read_a_consortium_run(
    clustered: tuple[Path, RunSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, summary = clustered
    assert main(["audit", "--run-dir", str(out)]) == 0
    assert "3 rounds, 1 epochs: every check passed" in capsys.readouterr().out
    model = summary.final_model
    assert main(["audit", "verify", model, "--run-dir", str(out), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["lineage"]["round"] == 3
    assert found["lineage"]["global_hash"] == summary.final_global_hash
    other = tmp_path / "other.bin"
    other.write_bytes(b"not a model of this run")
    assert main(["audit", "verify", str(other), "--run-dir", str(out)]) == 1
    assert "is not the final model of any round" in capsys.readouterr().out
    report = tmp_path / "audit"
    args = ["audit", "consortium", "--run-dir", str(out), "--model", model, "--out", str(report)]
    assert main(args) == 0
    assert (report / "report.html").is_file()
    assert main(["audit", "consortium", "--run-dir", str(tmp_path)]) == 2
    assert "is not the run directory of a federation kept by the Consortium" in (
        capsys.readouterr().err
    )


def test_shapley_scores_are_medians_a_lying_evaluator_cannot_move(tmp_path: Path) -> None:
    federate(tmp_path, 3, "consortium", "shapley", lying_evaluator_sites=("va",))
    events = read_jsonl(tmp_path / "events.jsonl")
    va = next(e["address"].lower() for e in events if e["event"] == "round" and e["node"] == "va")
    measures = [e for e in events if e["event"] == "contribution"]
    assert [e["round"] for e in measures] == [1, 2, 3]
    audit = audit_events(chain_events(tmp_path).records())
    assert not audit.problems, audit.problems
    for measure, round_record in zip(measures, audit.rounds, strict=True):
        measured = measure["measured"]
        assert len(measured) == 4  # the aggregator and the three others
        if measure["node"] != "va":  # its lie reached the aggregator
            assert measured[va] == {m: 1_000_000 if m == va else 0 for m in measured}
        honest = [shares for evaluator, shares in measured.items() if evaluator != va]
        [cluster] = round_record.clusters
        recorded = {r.account.lower(): r.score for r in cluster.records}
        assert recorded == measure["scores"]
        for member, score in recorded.items():
            assert min(h[member] for h in honest) <= score <= max(h[member] for h in honest)
        # each honest evaluator shares out the round's positive contribution: a million parts
        assert all(sum(h.values()) == 1_000_000 for h in honest)
