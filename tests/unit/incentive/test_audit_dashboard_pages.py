"""The auditors' dashboard without a network: views of both kinds of audit, the pages'
escaping and lineage, and the server's routes (its sockets: tests/integration/
test_audit_dashboard.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from incentive.audit_report import AuditReport, ClusterEntry, EpochEntry, MemberTotals, RoundEntry
from incentive.audit_report import UpdateEntry as LedgerUpdate
from incentive.audit_server import AuditServer
from incentive.audit_view import AuditView, view_of_consortium, view_of_ledger
from incentive.consortium_audit import (
    AuditedCluster,
    AuditedEpoch,
    AuditedMember,
    AuditedRecord,
    AuditedRound,
    ConsortiumAudit,
)
from medswarm.cli import main
from medswarm.http_responder import Request

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20
GENESIS, H1, H2 = "00" * 32, "11" * 32, "22" * 32
HOSTILE = "<script>alert(1)</script>"


def record(
    member: int, account: str, digest: str, score: int, rejected: bool = False
) -> AuditedRecord:
    return AuditedRecord(member, account, digest, 10, score, rejected, "", [])


def consortium_audit() -> ConsortiumAudit:
    """Two rounds; member 1 (a hostile name) is rejected in round 2; one epoch."""
    audit = ConsortiumAudit(genesis_hash=GENESIS, funded=100)
    audit.members = {
        0: AuditedMember(0, A, "St. Anna", 0, 1, contribution=12, credited=70),
        1: AuditedMember(1, B, HOSTILE, 0, 1, contribution=5, credited=30, penalty=2500),
    }
    audit.members[1].reputation_history = [(1, 10_000), (2, 7_500)]
    one = AuditedCluster(
        0, 0, "a1" * 32, "f1" * 32, 20, [record(0, A, "e1" * 32, 4), record(1, B, "e2" * 32, 5)]
    )
    two = AuditedCluster(
        0,
        1,
        "a2" * 32,
        "f2" * 32,
        10,
        [record(0, A, "e3" * 32, 8), record(1, B, "e4" * 32, 9, True)],
    )
    audit.rounds = [
        AuditedRound(1, GENESIS, H1, "c1", 2, 5, "0xt1", [one]),
        AuditedRound(2, H1, H2, "c2", 2, 6, "0xt2", [two]),
    ]
    audit.epochs = [AuditedEpoch(1, 100, 100, 0, {0: 70, 1: 30}, {0: 70, 1: 30})]
    return audit


def view() -> AuditView:
    return view_of_consortium(consortium_audit(), "run directory r", 31337, {"Consortium": A})


def get(server: AuditServer, path: str, **query: str) -> tuple[int, str]:
    answer = server.respond(Request("GET", path, query))
    return answer.status, answer.body.decode()


def serving(v: AuditView) -> AuditServer:
    server = AuditServer(lambda: v, "127.0.0.1", 0)
    server.view = v
    return server


def test_a_consortium_view_counts_only_accepted_updates_in_contribution_over_time() -> None:
    v = view()

    anna, other = v.members
    assert anna.contribution_history == [(1, 4), (2, 12)]  # 4, then 4 + 8
    assert other.contribution_history == [(1, 5), (2, 5)]  # round 2's 9 was rejected
    assert other.reputation == 7_500 and other.reputation_history == [(1, 10_000), (2, 7_500)]
    assert v.epochs[0].credits == {A: 70, B: 30}
    assert v.round_of_model("0x" + H2.upper()) is v.rounds[1]
    assert [r.round for r in v.ancestry(v.rounds[1])] == [2, 1]


def test_a_ledger_view_has_no_reputation_and_keys_credits_by_account() -> None:
    update = LedgerUpdate(A, "St. Anna", "e1" * 32, 10, 4)
    cluster = ClusterEntry(
        0, "a1" * 32, GENESIS, "f" * 64, A, "St. Anna", 0, 10, 3, "0x1", [update]
    )
    report = AuditReport(
        source="run directory r",
        chain_id=1,
        registry=A,
        ledger=B,
        rewards=A,
        genesis_hash=GENESIS,
        rounds=[RoundEntry(1, H1, GENESIS, True, 4, 1, [A], {H1: 1}, [cluster])],
        members=[MemberTotals(A, "St. Anna", "peer", 0, 4, 9, 0)],
        epochs=[EpochEntry(1, 9, 1, 5, {A: 9}, {A: 4})],
        funded=10,
        credited=9,
        withdrawn=0,
        problems=[],
    )

    v = view_of_ledger(report)

    assert v.kind == "ledger" and v.members[0].reputation is None
    assert v.members[0].contribution_history == [(1, 4)]
    assert v.epochs[0].credits == {A: 9} and v.epochs[0].paid == 9
    assert v.document == report.to_dict()
    status, page = get(serving(v), "/")
    assert status == 200 and "reputation after each round" not in page


def test_every_page_escapes_a_hostile_hospital_name() -> None:
    server = serving(view())

    pages = [get(server, p)[1] for p in ("/", "/round/2", f"/hospital/{B}", f"/model/{'e2' * 32}")]

    for page in pages:
        assert HOSTILE not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_model_hash_leads_to_its_round_and_the_rounds_it_builds_on() -> None:
    server = serving(view())

    status, page = get(server, f"/model/0x{H2}")
    by_form = get(server, "/model", hash=H2.upper())

    assert status == 200 and by_form == (200, page)
    assert f'<code id="global-hash">{H2}</code>' in page
    assert '<a href="/round/1">round 1</a>' in page and "genesis" in page
    assert "Hospitals whose accepted updates went into it: St. Anna." in page  # 1 was rejected
    assert "rejected" in page and f'<a href="/model/{"e4" * 32}">' in page


def test_an_update_hash_shows_where_it_was_used() -> None:
    status, page = get(serving(view()), f"/model/{'e3' * 32}")

    assert status == 200
    assert '<a href="/round/2">round 2</a>' in page and "update of" in page


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/round/3", 404),
        ("/round/x", 404),
        ("/hospital/nobody", 404),
        ("/model/12", 400),
        ("/elsewhere", 404),
    ],
)
def test_unknown_things_get_a_page_saying_so(path: str, status: int) -> None:
    assert get(serving(view()), path)[0] == status


def test_health_and_the_json_document() -> None:
    server = serving(view())
    server.last_error = "the last refresh failed"

    health = json.loads(get(server, "/health")[1])
    document = json.loads(get(server, "/audit.json")[1])

    assert health == {
        "status": "ok",
        "rounds": 2,
        "ok": True,
        "last_error": "the last refresh failed",
    }
    assert document["rounds"][1]["global_hash"] == H2
    assert 'id="note">the last refresh failed' in get(server, "/")[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["audit", "serve"], "error: give --run-dir RUN, or --rpc URL with --address"),
        (["audit", "serve", "--run-dir", "r", "--address", A], "error: --address, --registry"),
        (["audit", "serve", "--rpc", "http://127.0.0.1:1"], "error: with --rpc give one of"),
        (["audit", "serve", "--run-dir", "r", "--bind", "9465"], "error: --bind '9465': give"),
        (["audit", "serve", "--run-dir", "r", "--refresh", "-1"], "error: --refresh must be"),
    ],
)
def test_serve_options_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(message)


def test_a_taken_port_is_reported_with_what_to_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "chain").mkdir()
    (tmp_path / "chain" / "deployment.json").write_text(
        json.dumps(
            {"format": "medswarm-consortium/1", "chain_id": 1, "consortium": A, "rewards": B}
        )
    )
    (tmp_path / "chain" / "events.jsonl").write_text("")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        code = main(["audit", "serve", "--run-dir", str(tmp_path), "--bind", f"127.0.0.1:{port}"])
    finally:
        taken.close()

    assert code == 2
    assert capsys.readouterr().err == (
        f"error: --bind 127.0.0.1:{port}: port {port} on 127.0.0.1 is already in use by another "
        'process; set --bind to a free port, or to "127.0.0.1:0" to take any free one\n'
    )
