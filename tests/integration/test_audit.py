"""The audit of a small real run: report numbers, checks, verify, CLI exit codes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from chain_kit import HOSPITALS, sha

from incentive.audit import build_audit, source_from_chain, source_from_run_dir, verify_model
from incentive.chain import EmbeddedChain
from incentive.clients import AdminClient, MemberClient
from incentive.deploy import deploy_federation
from incentive.deployment import Deployment
from incentive.events import EventLog
from incentive.records import MemberRecord
from incentive.rundir import EVENTS_FILE, write_chain_record
from medswarm.cli import main

pytestmark = pytest.mark.integration

FUNDED = 10**18
MODEL_1 = b"global model after round 1"
MODEL_2 = b"global model after round 2"
# (samples, score) per hospital, in admission order
ROUND_1 = [(100, 5), (200, 0), (300, 7), (400, 11)]
ROUND_2 = [(110, 1), (210, 2), (310, 3), (410, 4)]


@dataclass
class Run:
    chain: EmbeddedChain
    deployment: Deployment
    run_dir: Path
    members: list[str]


def records(
    members: list[MemberClient], round: int, values: list[tuple[int, int]]
) -> list[MemberRecord]:
    return [
        MemberRecord(m.address, sha(f"update {round} {i}"), samples, score)
        for i, (m, (samples, score)) in enumerate(zip(members, values, strict=True))
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Deploy, admit 4 hospitals, record and attest 2 rounds, fund, distribute, withdraw."""
    chain = EmbeddedChain(num_accounts=5)
    log = EventLog()
    keys = chain.private_keys
    deployment = deploy_federation(chain.w3, keys[0], chain.lock, log)
    admin = AdminClient(chain.w3, deployment, keys[0], chain.lock, log)
    members = [MemberClient(chain.w3, deployment, k, chain.lock, log) for k in keys[1:5]]
    for member, name in zip(members, HOSPITALS, strict=True):
        admin.admit(member.address, name)
        member.register(f"peer-{name}", ["/ip4/127.0.0.1/tcp/9000"])
    previous = "00" * 32
    for round, values, model in ((1, ROUND_1, MODEL_1), (2, ROUND_2, MODEL_2)):
        global_hash = hashlib.sha256(model).hexdigest()
        aggregator = members[round % 4]
        aggregator.record_round(round, global_hash, previous, records(members, round, values))
        for member in members[:3]:
            member.attest(round, global_hash)
        previous = global_hash
    admin.fund_rewards(FUNDED)
    admin.distribute()
    members[0].withdraw()
    run_dir = tmp_path_factory.mktemp("run")
    write_chain_record(run_dir, deployment, log)
    return Run(chain, deployment, run_dir, [m.address for m in members])


def test_report_traces_rounds_to_hospitals_and_checks_out(run: Run) -> None:
    report = build_audit(source_from_run_dir(run.run_dir))

    assert report.problems == []
    assert [r.round for r in report.rounds] == [1, 2]
    second = report.rounds[1]
    assert second.global_hash == hashlib.sha256(MODEL_2).hexdigest()
    assert second.previous_hash == hashlib.sha256(MODEL_1).hexdigest()
    assert second.aggregator == run.members[2]
    assert second.aggregator_name == "Karolinska"
    assert (second.finalized, second.attestations) == (True, 3)
    by_name = {u.name: u for u in second.updates}
    assert set(by_name) == set(HOSPITALS)
    assert (by_name["Charite"].samples, by_name["Charite"].score) == (210, 2)
    assert by_name["Charite"].update_hash == sha("update 2 1")

    totals = {m.name: m for m in report.members}
    assert [totals[n].contribution for n in HOSPITALS] == [6, 2, 10, 15]
    total = 33
    shares = [FUNDED * c // total for c in (6, 2, 10, 15)]
    assert [totals[n].credited for n in HOSPITALS] == shares
    assert totals["St. Anna"].withdrawn == shares[0]
    assert report.funded == FUNDED
    assert report.epochs[0].dust == FUNDED - sum(shares)


def test_live_chain_audit_matches_the_run_directory(run: Run) -> None:
    live = build_audit(
        source_from_chain(run.chain.w3, run.deployment.registry, lock=run.chain.lock)
    )
    recorded = build_audit(source_from_run_dir(run.run_dir))

    assert live.problems == []
    assert live.rounds == recorded.rounds
    assert live.members == recorded.members
    assert live.epochs == recorded.epochs


def test_cli_prints_each_round_and_hospital(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--run-dir", str(run.run_dir)]) == 0

    out = capsys.readouterr().out
    assert hashlib.sha256(MODEL_2).hexdigest() in out
    assert sha("update 1 3") in out
    assert "Gemelli" in out and "Checks passed" in out


def test_cli_json_is_machine_readable(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--run-dir", str(run.run_dir), "--json"]) == 0

    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True
    assert data["rounds"][0]["updates"][3]["score"] == 11
    assert data["members"][0]["outstanding"] == 0


def test_verify_finds_the_round_that_produced_a_model(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "global.pt"
    model.write_bytes(MODEL_2)

    assert main(["audit", "verify", str(model), "--run-dir", str(run.run_dir)]) == 0
    assert "round 2" in capsys.readouterr().out
    found = verify_model(model, build_audit(source_from_run_dir(run.run_dir)))
    assert found is not None and found.round == 2


def test_verify_reports_an_unknown_model(
    run: Run, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "other.pt"
    model.write_bytes(b"\x07" * 1000)

    assert main(["audit", "--run-dir", str(run.run_dir), "verify", str(model)]) == 1
    assert "not produced by any recorded round" in capsys.readouterr().out


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
    (broken / "chain" / "deployment.json").write_text(run.deployment.to_json())
    (broken / EVENTS_FILE).write_text('{"contract": "Ledger"}\nnot json\n')

    assert main(["audit", "--run-dir", str(broken)]) == 2
    assert "events.jsonl:1: not an event record" in capsys.readouterr().err


def test_tampered_score_is_flagged(run: Run, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    (tampered / "chain").mkdir(parents=True)
    (tampered / "chain" / "deployment.json").write_text(run.deployment.to_json())
    lines = (run.run_dir / EVENTS_FILE).read_text().splitlines()
    edited = []
    for line in lines:
        event = json.loads(line)
        if event["event"] == "UpdateRecorded" and event["args"]["score"] == 11:
            event["args"]["score"] = 12
        edited.append(json.dumps(event))
    (tampered / EVENTS_FILE).write_text("\n".join(edited) + "\n")

    report = build_audit(source_from_run_dir(tampered))

    assert any("round 1: recordsHash on chain" in p for p in report.problems)
    assert any(p.startswith("epoch 1: Gemelli") for p in report.problems)
    assert main(["audit", "--run-dir", str(tampered)]) == 1
