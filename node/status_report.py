"""What a node's status server answers: ``/health``, ``/status`` (JSON) and ``/metrics``
(Prometheus text), read from the running node without waiting on anything.

Every figure comes from the node's own bookkeeping: the round events it emitted
(:class:`~node.round_figures.RoundFigures`), its gossip service's counters (bytes on the
wire, announcements rejected and ignored by reason, blob requests refused, offences), its
chain client's request latencies and transactions in flight
(:class:`~incentive.chain_stats.ChainCallStats`), the registry as it last read it, and the
members' standings (contribution, reputation) as the status server last read them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from medswarm.prometheus import Metric, render
from node.round_book import Standing

if TYPE_CHECKING:
    from node.hospital import HospitalNode


def health_document(node: HospitalNode) -> tuple[bool, dict[str, Any]]:
    """Whether the node is taking part (not left the federation), and the body saying so."""
    if node.left is not None:
        return False, {"status": "left-federation", "reason": node.left}
    return True, {"status": "ok", "round": node.current_round}


def status_document(node: HospitalNode, standings: dict[str, Standing]) -> dict[str, Any]:
    """The node's state: rounds, peers, chain, membership and standings."""
    gossip = node.gossip
    connected = set(gossip.connected_peers())
    own = standings.get(node.address.lower())
    last = node.figures.last
    return {
        "node": node.name,
        "address": node.address,
        "peer_id": gossip.peer_id,
        "listen_addrs": gossip.listen_addrs,
        "federation": node.config.federation.name,
        "ledger": node.book.kind,
        "rounds": node.config.federation.rounds,
        "current_round": node.current_round,
        "completed_round": node.completed_round,
        "last_global_hash": node.global_hash,
        "left_federation": node.left,
        "pending_transactions": node.book.chain_stats.pending,
        "contribution": own.contribution if own else None,
        "reputation": own.reputation if own else None,
        "peers": {
            "connected": sorted(connected),
            "blacklisted": sorted(p for p in gossip.offences if gossip.is_blacklisted(p)),
        },
        "membership": [
            {
                "name": member.name,
                "address": member.address,
                "cluster": member.cluster,
                "peer_id": member.peer_id,
                "connected": member.peer_id in connected,
                "self": member.address.lower() == node.address.lower(),
                **_standing(standings.get(member.address.lower())),
            }
            for member in node.membership.members
        ],
        "last_round": None if last is None else dataclasses.asdict(last),
    }


def _standing(standing: Standing | None) -> dict[str, int | None]:
    if standing is None:
        return {"contribution": None, "reputation": None}
    return {"contribution": standing.contribution, "reputation": standing.reputation}


def metrics_text(node: HospitalNode) -> str:
    """The node's figures in Prometheus's text exposition format."""
    return render(node_metrics(node))


def node_metrics(node: HospitalNode) -> list[Metric]:
    """The metric families ``GET /metrics`` serves."""
    figures, gossip, chain = node.figures, node.gossip, node.book.chain_stats
    rejected = _counted(
        "medswarm_gossip_rejected_total",
        "Announcements rejected (invalid or forged), by reason.",
        "reason",
        gossip.rejected,
    )
    ignored = _counted(
        "medswarm_gossip_ignored_total",
        "Announcements ignored (late, ahead, unknown sender), by reason.",
        "reason",
        gossip.ignored,
    )
    refused = _counted(
        "medswarm_blob_requests_refused_total",
        "Blob requests this node turned away, by reason.",
        "reason",
        gossip.refused,
    )
    phases = _counted(
        "medswarm_round_phase_seconds_total",
        "Seconds spent in each phase of finished rounds, summed.",
        "phase",
        figures.phase_seconds,
    )
    latency = Metric(
        "medswarm_chain_request_duration_seconds",
        "histogram",
        "Chain requests' duration (retries included), by kind: call, read, transaction.",
    )
    for kind, snapshot in chain.latency().items():
        latency.add(snapshot, kind=kind)
    failures = _counted(
        "medswarm_chain_request_failures_total",
        "Chain requests that failed (reverts included), by kind.",
        "kind",
        chain.failures(),
    )
    traffic = gossip.traffic
    return [
        Metric("medswarm_round_current", "gauge", "The round this node is working on.").add(
            node.current_round
        ),
        Metric("medswarm_round_completed", "gauge", "The last round this node holds final.").add(
            node.completed_round
        ),
        Metric(
            "medswarm_rounds_completed_total",
            "counter",
            "Rounds this process took part in to the end.",
        ).add(figures.rounds_completed),
        Metric("medswarm_round_failures_total", "counter", "Failed attempts at a round.").add(
            figures.round_failures
        ),
        Metric("medswarm_resyncs_total", "counter", "Final models fetched to catch up.").add(
            figures.resyncs
        ),
        Metric(
            "medswarm_round_duration_seconds",
            "histogram",
            "Wall time of finished rounds, from the first attempt to the evaluation.",
        ).add(figures.durations.snapshot()),
        phases,
        Metric(
            "medswarm_network_bytes_total",
            "counter",
            "Bytes of announcements and blobs this node sent and received.",
        )
        .add(traffic["sent"], direction="sent")
        .add(traffic["received"], direction="received"),
        Metric(
            "medswarm_bulk_channel_bytes_total",
            "counter",
            "The part of those bytes that went over the bulk channel.",
        )
        .add(traffic["bulk_sent"], direction="sent")
        .add(traffic["bulk_received"], direction="received"),
        rejected,
        ignored,
        refused,
        Metric(
            "medswarm_peer_offences_total",
            "counter",
            "Offences counted against peers (rejected announcements, forged blobs).",
        ).add(sum(gossip.offences.values())),
        Metric("medswarm_peers_connected", "gauge", "Peers with an open libp2p connection.").add(
            len(gossip.connected_peers())
        ),
        Metric("medswarm_members", "gauge", "Active members in the registry as last read.").add(
            len(node.membership.members)
        ),
        latency,
        failures,
        Metric(
            "medswarm_chain_transactions_pending",
            "gauge",
            "Transactions signed whose receipt has not come yet.",
        ).add(chain.pending),
    ]


def _counted(name: str, help_text: str, label: str, counts: Mapping[str, float]) -> Metric:
    """A counter family with one sample per key of ``counts``, labelled ``label``."""
    metric = Metric(name, "counter", help_text)
    for key, value in sorted(counts.items()):
        metric.add(value, **{label: key})
    return metric
