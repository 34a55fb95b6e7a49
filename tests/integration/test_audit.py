"""The audit of a small real run (two clusters, two rounds): report, checks, verify, CLI."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from chain_kit import HOSPITALS, Federation, reverted_with, sha, start_federation

from incentive.audit import build_audit, source_from_chain, source_from_run_dir, verify_model
from incentive.chain import EmbeddedChain
from incentive.events import EventLog
from incentive.privacy_budget import PrivacyBudget
from incentive.records import MemberRecord
from incentive.rundir import EVENTS_FILE, write_chain_record
from medswarm.cli import main

pytestmark = pytest.mark.integration

FUNDED = 10**18
MODEL_0 = b"initial model"
MODEL_1 = b"global model after round 1"
MODEL_2 = b"global model after round 2"
FORGED = b"a model one member claimed for round 1"
# (samples, score) per hospital, in admission order; clusters are 0, 0, 1, 1
ROUND_1 = [(100, 5), (200, 0), (300, 7), (400, 11)]
ROUND_2 = [(110, 1), (210, 2), (310, 3), (410, 4)]
# the members' privacy budgets after rounds 1 and 2: epsilon 1.47 and 2.08 at delta 1e-5
BUDGET_1 = PrivacyBudget(1_470_000, 10**13)
BUDGET_2 = PrivacyBudget(2_080_000, 10**13)


def digest(model: bytes) -> str:
    return hashlib.sha256(model).hexdigest()


@dataclass
class Run:
    fed: Federation
    run_dir: Path
    members: list[str]
    failover: str  # who recorded cluster 1 in round 2 (its second candidate)


def records(
    fed: Federation, round: int, cluster: int, values: list[tuple[int, int]]
) -> list[MemberRecord]:
    return [
        MemberRecord(m.address, sha(f"update {round} {i}"), samples, score)
        for i, (m, (samples, score)) in enumerate(zip(fed.members, values, strict=True))
        if fed.clusters[i] == cluster
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Two rounds over two clusters, then fund, distribute and one withdrawal.

    Round 1: both first candidates record; St. Anna attests a different hash, the other
    three agree and finalize. Round 2: cluster 1's first candidate is silent, the second
    records, the first's late record is refused; all four attest (the fourth after final).
    """
    chain = EmbeddedChain(num_accounts=6)
    fed = start_federation(chain, genesis=digest(MODEL_0), log=EventLog())
    m = fed.members
    for c in (0, 1):
        fed.candidates(1, c)[0].record_cluster(
            1, c, sha(f"aggregate 1 {c}"), digest(MODEL_0), records(fed, 1, c, ROUND_1)
        )
    m[0].attest(1, digest(FORGED), BUDGET_1)
    for member in m[1:]:
        member.attest(1, digest(MODEL_1), BUDGET_1)

    fed.candidates(2, 0)[0].record_cluster(
        2, 0, sha("aggregate 2 0"), digest(MODEL_1), records(fed, 2, 0, ROUND_2)
    )
    silent, failover = fed.candidates(2, 1)
    failover.record_cluster(
        2, 1, sha("aggregate 2 1"), digest(MODEL_1), records(fed, 2, 1, ROUND_2)
    )
    reverted_with(
        "ClusterAlreadyRecorded", silent.record_cluster, 2, 1, sha("late"), digest(MODEL_1),
        records(fed, 2, 1, ROUND_2),
    )  # fmt: skip
    for member in m:
        member.attest(2, digest(MODEL_2), BUDGET_2)

    fed.admin.fund_rewards(FUNDED)
    fed.admin.distribute()
    m[0].withdraw()
    run_dir = tmp_path_factory.mktemp("run")
    write_chain_record(run_dir, fed.deployment, fed.log)
    return Run(fed, run_dir, [x.address for x in m], failover.address)


def test_report_traces_rounds_to_clusters_and_hospitals(run: Run) -> None:
    report = build_audit(source_from_run_dir(run.run_dir))

    assert report.problems == []
    assert report.genesis_hash == digest(MODEL_0)
    first, second = report.rounds
    assert (first.round, first.final_hash, first.previous_hash) == (
        1,
        digest(MODEL_1),
        digest(MODEL_0),
    )
    assert first.votes == {digest(FORGED): 1, digest(MODEL_1): 3}
    assert (first.finalized, first.attestations) == (True, 3)
    assert first.attesters == run.members[1:]
    assert [c.candidate_rank for c in first.clusters] == [0, 0]
    assert (first.epsilon, first.delta, first.epsilon_e6) == (1.47, 1e-5, 1_470_000)
    assert (second.epsilon, second.delta, second.delta_e18) == (2.08, 1e-5, 10**13)

    assert (second.final_hash, second.previous_hash) == (digest(MODEL_2), digest(MODEL_1))
    assert second.attestations == 4  # the fourth came after the round was final
    cluster_1 = second.clusters[1]
    assert (cluster_1.cluster, cluster_1.aggregator) == (1, run.failover)
    assert cluster_1.candidate_rank == 1
    assert cluster_1.aggregator_name == HOSPITALS[run.members.index(run.failover)]
    assert cluster_1.aggregate_hash == sha("aggregate 2 1")
    assert cluster_1.total_samples == 310 + 410
    by_name = {u.name: u for u in cluster_1.updates}
    assert set(by_name) == {"Karolinska", "Gemelli"}
    assert (by_name["Gemelli"].samples, by_name["Gemelli"].score) == (410, 4)
    assert by_name["Gemelli"].update_hash == sha("update 2 3")
    assert {u.name for u in second.clusters[0].updates} == {"St. Anna", "Charite"}

    totals = {m.name: m for m in report.members}
    assert [totals[n].cluster for n in HOSPITALS] == [0, 0, 1, 1]
    assert [totals[n].contribution for n in HOSPITALS] == [6, 2, 10, 15]
    shares = [FUNDED * c // 33 for c in (6, 2, 10, 15)]
    assert [totals[n].credited for n in HOSPITALS] == shares
    assert totals["St. Anna"].withdrawn == shares[0]
    assert report.epochs[0].dust == FUNDED - sum(shares)


def test_live_chain_audit_matches_the_run_directory(run: Run) -> None:
    chain = run.fed.chain
    live = build_audit(source_from_chain(chain.w3, run.fed.deployment.registry, lock=chain.lock))
    recorded = build_audit(source_from_run_dir(run.run_dir))

    assert live.problems == []
    assert live.rounds == recorded.rounds
    assert live.members == recorded.members
    assert live.epochs == recorded.epochs


def test_cli_prints_each_round_cluster_and_hospital(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "--run-dir", str(run.run_dir)]) == 0

    out = capsys.readouterr().out
    assert f"Round 2  final {digest(MODEL_2)}" in out
    assert f"other hash {digest(FORGED)}: 1 vote(s)" in out
    assert "candidate rank 1" in out
    assert sha("update 1 3") in out
    assert "Gemelli" in out and "Checks passed" in out
    assert "differential privacy: epsilon 1.470000 at delta 1e-05" in out
    assert "differential privacy: epsilon 2.080000 at delta 1e-05" in out


def test_cli_json_is_machine_readable(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--run-dir", str(run.run_dir), "--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    updates = data["rounds"][0]["clusters"][1]["updates"]
    assert {u["name"]: u["score"] for u in updates} == {"Karolinska": 7, "Gemelli": 11}
    assert data["rounds"][1]["clusters"][1]["candidate_rank"] == 1
    assert data["members"][0]["outstanding"] == 0
    assert [(r["epsilon"], r["delta"]) for r in data["rounds"]] == [(1.47, 1e-5), (2.08, 1e-5)]


def test_verify_finds_the_round_whose_final_hash_is_the_model(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "global.pt"
    model.write_bytes(MODEL_2)

    assert main(["audit", "verify", str(model), "--run-dir", str(run.run_dir), "--json"]) == 0

    found = json.loads(capsys.readouterr().out)
    assert (found["round"], found["finalized"], found["attestations"]) == (2, True, 4)
    assert [(c["cluster"], c["candidate_rank"]) for c in found["clusters"]] == [(0, 0), (1, 1)]
    entry = verify_model(model, build_audit(source_from_run_dir(run.run_dir)))
    assert entry is not None and entry.round == 2
    assert main(["audit", "verify", str(model), "--run-dir", str(run.run_dir)]) == 0
    assert "final global model of round 2" in capsys.readouterr().out


@pytest.mark.parametrize("content", [MODEL_0, FORGED, b"\x07" * 1000])
def test_verify_rejects_models_no_round_finalized(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    model = tmp_path / "other.pt"
    model.write_bytes(content)

    assert main(["audit", "--run-dir", str(run.run_dir), "verify", str(model)]) == 1
    assert "is not the final model of any round" in capsys.readouterr().out


def test_missing_run_dir_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope"

    assert main(["audit", "--run-dir", str(missing)]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"error: run directory {missing} does not exist")
    assert "Traceback" not in err


def test_garbled_events_file_is_a_clear_error(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    (broken / "chain").mkdir(parents=True)
    (broken / "chain" / "deployment.json").write_text(run.fed.deployment.to_json())
    (broken / EVENTS_FILE).write_text('{"contract": "Ledger"}\nnot json\n')

    assert main(["audit", "--run-dir", str(broken)]) == 2
    assert "events.jsonl:1: not an event record" in capsys.readouterr().err


def tamper(run: Run, target: Path, edit: Any) -> Path:
    """Copy the run's chain record to ``target`` with ``edit(event)`` applied to each event."""
    (target / "chain").mkdir(parents=True)
    (target / "chain" / "deployment.json").write_text(run.fed.deployment.to_json())
    lines = (run.run_dir / EVENTS_FILE).read_text().splitlines()
    edited = []
    for line in lines:
        event = json.loads(line)
        edit(event)
        edited.append(json.dumps(event))
    (target / EVENTS_FILE).write_text("\n".join(edited) + "\n")
    return target


def _raise_score(event: dict[str, Any]) -> None:
    if event["event"] == "UpdateRecorded" and event["args"]["score"] == 11:
        event["args"]["score"] = 12


def _other_previous(event: dict[str, Any]) -> None:
    if event["event"] == "ClusterRecorded" and event["args"]["round"] == 2:
        event["args"]["previousGlobalHash"] = "0x" + digest(FORGED)


def _claim_first_rank(event: dict[str, Any]) -> None:
    if event["event"] == "ClusterRecorded" and event["args"]["candidateRank"] == 1:
        event["args"]["candidateRank"] = 0


def _shrinking_budget(event: dict[str, Any]) -> None:
    if event["event"] == "Attested" and event["args"]["round"] == 2:
        event["args"]["epsilonE6"] = 1_469_999


@pytest.mark.parametrize(
    ("edit", "problems"),
    [
        (_shrinking_budget, ["round 2 records epsilon 1.469999 at delta 1e-05, less than"]),
        (_raise_score, ["round 1 cluster 1: recordsHash on chain", "epoch 1: Gemelli"]),
        (_other_previous, ["round 2 cluster 0 names previous hash", "round 2 cluster 1 names"]),
        (_claim_first_rank, ["round 2 cluster 1: aggregator"]),
    ],
)
def test_tampered_records_are_flagged(
    run: Run, tmp_path: Path, edit: Any, problems: list[str]
) -> None:
    tampered = tamper(run, tmp_path / "tampered", edit)

    report = build_audit(source_from_run_dir(tampered))

    for problem in problems:
        assert any(p.startswith(problem) for p in report.problems), report.problems
    assert main(["audit", "--run-dir", str(tampered)]) == 1


def test_attesters_of_one_final_hash_naming_different_budgets_are_flagged(
    run: Run, tmp_path: Path
) -> None:
    def one_other_budget(event: dict[str, Any]) -> None:
        args = event["args"]
        if event["event"] == "Attested" and (args["round"], args["member"]) == (2, run.members[0]):
            args["epsilonE6"] = 2_080_001

    report = build_audit(source_from_run_dir(tamper(run, tmp_path / "tampered", one_other_budget)))

    (problem,) = report.problems
    assert problem.startswith(
        "round 2: the attesters of the final hash record different privacy budgets (St. Anna "
        "epsilon 2.080001 at delta 1e-05, Charite epsilon 2.080000 at delta 1e-05"
    )
