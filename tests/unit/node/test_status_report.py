"""What the status server says about a node, from a stand-in node whose counters are set by
hand: health, the status document, the metrics and the dashboard page."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from incentive.chain_stats import ChainCallStats
from incentive.records import MemberInfo
from node.config import MedswarmConfig
from node.dashboard import dashboard_html
from node.round_book import Standing
from node.round_figures import RoundFigures
from node.status_report import health_document, metrics_text, status_document

ME = "0x00000000000000000000000000000000000000aa"
OTHER = "0x00000000000000000000000000000000000000bb"


class FakeGossip:
    peer_id = "12D3KooWme"

    def __init__(self) -> None:
        self.listen_addrs = ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWme"]
        self.traffic: Counter[str] = Counter(
            {"sent": 1000, "received": 3000, "bulk_sent": 400, "bulk_received": 2000}
        )
        self.rejected: Counter[str] = Counter({"bad-signature": 2, "flooding": 1})
        self.ignored: Counter[str] = Counter({"late": 4})
        self.refused: Counter[str] = Counter({"non-member": 1})
        self.offences: Counter[str] = Counter({"12D3KooWbad": 3})

    def connected_peers(self) -> list[str]:
        return ["12D3KooWother"]

    def is_blacklisted(self, peer: str) -> bool:
        return self.offences[peer] >= 3


def round_event(number: int, seconds: float, global_hash: str) -> dict[str, Any]:
    return {
        "event": "round",
        "round": number,
        "global_hash": global_hash,
        "seconds": seconds,
        "cluster": 0,
        "aggregator": ME,
        "update_hash": "ab" * 32,
        "samples": 199,
        "metric_name": "accuracy",
        "test_metric": 0.75,
        "bytes_sent": 100,
        "bytes_received": 300,
        "phase_seconds": {"train": 0.5, "attest": 0.25},
    }


def fake_node(name: str = "st-anna") -> Any:
    figures = RoundFigures()
    figures.observe(round_event(1, 1.5, "11" * 32))
    figures.observe(round_event(2, 4.0, "22" * 32))
    figures.observe({"event": "round-failed", "round": 3})
    members = [
        MemberInfo(ME, "St. Anna", "12D3KooWme", [], cluster=0),
        MemberInfo(OTHER, "Other <b>", "12D3KooWother", [], cluster=1),
    ]
    return SimpleNamespace(
        name=name,
        address=ME,
        config=MedswarmConfig(),
        gossip=FakeGossip(),
        book=SimpleNamespace(kind="consortium", chain_stats=ChainCallStats()),
        membership=SimpleNamespace(members=members),
        figures=figures,
        current_round=3,
        completed_round=2,
        global_hash="22" * 32,
        left=None,
    )


STANDINGS = {ME: Standing(120, 10_000), OTHER: Standing(80, 7_500)}


def test_health_is_ok_until_the_node_leaves() -> None:
    node = fake_node()
    assert health_document(node) == (True, {"status": "ok", "round": 3})

    node.left = "excluded for low reputation"

    assert health_document(node) == (
        False,
        {"status": "left-federation", "reason": "excluded for low reputation"},
    )


def test_the_status_document_joins_membership_peers_and_standings() -> None:
    status = status_document(fake_node(), STANDINGS)

    assert status["completed_round"] == 2 and status["last_global_hash"] == "22" * 32
    assert status["contribution"] == 120 and status["reputation"] == 10_000
    assert status["peers"] == {"connected": ["12D3KooWother"], "blacklisted": ["12D3KooWbad"]}
    assert status["pending_transactions"] == 0 and status["ledger"] == "consortium"
    assert [
        (m["name"], m["connected"], m["self"], m["reputation"]) for m in status["membership"]
    ] == [
        ("St. Anna", False, True, 10_000),
        ("Other <b>", True, False, 7_500),
    ]
    assert status["last_round"]["round"] == 2 and status["last_round"]["seconds"] == 4.0


def test_metrics_carry_the_counters_of_the_node() -> None:
    node = fake_node()
    stats = node.book.chain_stats
    with stats.timed("call"):
        pass
    with stats.in_flight():
        text = metrics_text(node)

    lines = set(text.splitlines())
    assert {
        "medswarm_round_current 3",
        "medswarm_round_completed 2",
        "medswarm_rounds_completed_total 2",
        "medswarm_round_failures_total 1",
        'medswarm_round_duration_seconds_bucket{le="1"} 0',
        'medswarm_round_duration_seconds_bucket{le="2"} 1',
        'medswarm_round_duration_seconds_bucket{le="5"} 2',
        "medswarm_round_duration_seconds_sum 5.5",
        "medswarm_round_duration_seconds_count 2",
        'medswarm_round_phase_seconds_total{phase="attest"} 0.5',
        'medswarm_round_phase_seconds_total{phase="train"} 1',
        'medswarm_network_bytes_total{direction="sent"} 1000',
        'medswarm_network_bytes_total{direction="received"} 3000',
        'medswarm_bulk_channel_bytes_total{direction="received"} 2000',
        'medswarm_gossip_rejected_total{reason="bad-signature"} 2',
        'medswarm_gossip_rejected_total{reason="flooding"} 1',
        'medswarm_gossip_ignored_total{reason="late"} 4',
        'medswarm_blob_requests_refused_total{reason="non-member"} 1',
        "medswarm_peer_offences_total 3",
        "medswarm_peers_connected 1",
        "medswarm_members 2",
        'medswarm_chain_request_duration_seconds_count{kind="call"} 1',
        'medswarm_chain_request_duration_seconds_count{kind="transaction"} 0',
        "medswarm_chain_transactions_pending 1",
    } <= lines
    assert "# TYPE medswarm_round_duration_seconds histogram" in lines
    assert "# TYPE medswarm_gossip_rejected_total counter" in lines


def test_the_dashboard_escapes_what_it_shows() -> None:
    page = dashboard_html(fake_node(name="<script>alert(1)</script>"), STANDINGS)

    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Other &lt;b&gt;" in page
    assert "22" * 32 in page and "11" * 32 in page
    assert page.index("22" * 32, page.index("<h2>Rounds</h2>")) < page.index("11" * 32)
