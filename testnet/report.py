"""What a testnet run leaves behind: rounds.jsonl, summary.json and the final model."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class HospitalSummary:
    """One hospital's line in the summary table."""

    name: str
    site: str
    address: str
    samples: int
    local_only_accuracy: float
    federated_accuracy: float | None  # None: it took part in no round (an outsider)
    contribution: int
    reward_wei: int
    metric: float | None = None  # the task's metric (metric_name) of the final model
    personal_metric: float | None = None  # of its personalised model, if the strategy has one

    @property
    def reward_eth(self) -> float:
        return self.reward_wei / 10**18


@dataclass
class RunSummary:
    """The machine-readable result of a run (``summary.json``)."""

    dataset: str
    federation: str
    seed: int
    rounds: int
    nodes_agree: bool
    final_global_hash: str
    final_model: str
    final_mean_accuracy: float
    mean_local_only_accuracy: float
    seconds: float
    hospitals: list[HospitalSummary] = field(default_factory=list)
    chain: dict[str, Any] = field(default_factory=dict)
    metric_name: str = "accuracy"
    final_mean_metric: float | None = None
    final_mean_personal_metric: float | None = None  # when the strategy personalises
    # differential privacy (federation.dp_*): the epsilon each member's updates spent over the
    # run at delta; None when members add no noise
    epsilon: float | None = None
    delta: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for hospital, raw in zip(self.hospitals, data["hospitals"], strict=True):
            raw["reward_eth"] = hospital.reward_eth
            raw["reward"] = hospital.reward_wei
        return data


class RoundLog:
    """Collects per-node round events and writes one ``rounds.jsonl`` line per round."""

    def __init__(self, path: Path, node_count: int, events_path: Path | None = None) -> None:
        self.path = path
        self.events_path = events_path
        self.node_count = node_count
        self._pending: dict[int, list[dict[str, Any]]] = {}
        self.completed: list[dict[str, Any]] = []
        self._excluded: dict[int, list[dict[str, Any]]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        if events_path is not None:
            events_path.write_text("")

    def record(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Take one node event; return the round line once every node has reported."""
        if self.events_path is not None:
            with self.events_path.open("a") as handle:
                handle.write(json.dumps(event, sort_keys=True) + "\n")
        if event.get("event") == "excluded":
            entry = {"member": event["member"], "by": event["node"], "reason": event["reason"]}
            self._excluded.setdefault(int(event["round"]), []).append(entry)
            return None
        if event.get("event") == "left-federation":
            # A node excluded by the consortium reports no more rounds.
            self.node_count -= 1
            ready = sorted(r for r, p in self._pending.items() if len(p) >= self.node_count)
            lines = [self._complete(r) for r in ready]  # every round it was holding up
            return lines[-1] if lines else None
        if event.get("event") != "round":
            return None
        pending = self._pending.setdefault(int(event["round"]), [])
        pending.append(event)
        if len(pending) < self.node_count:
            return None
        return self._complete(int(event["round"]))

    def _complete(self, round_number: int) -> dict[str, Any]:
        pending = self._pending.pop(round_number)
        line = summarise_round(pending)
        line["excluded"] = self._excluded.pop(round_number, [])
        self.completed.append(line)
        with self.path.open("a") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
        return line


def summarise_round(events: list[dict[str, Any]]) -> dict[str, Any]:
    """One round's line: the global hash(es), per-node metrics and their mean."""
    events = sorted(events, key=lambda e: str(e["node"]))
    hashes = sorted({str(e["global_hash"]) for e in events})
    return {
        "round": events[0]["round"],
        "global_hash": hashes[0] if len(hashes) == 1 else None,
        "global_hashes": hashes,
        "nodes_agree": len(hashes) == 1,
        "mean_test_accuracy": statistics.fmean(float(e["test_accuracy"]) for e in events),
        "metric_name": events[0].get("metric_name", "accuracy"),
        "mean_test_metric": statistics.fmean(
            float(e.get("test_metric", e["test_accuracy"])) for e in events
        ),
        "mean_personal_metric": (
            statistics.fmean(float(e["personal_metric"]) for e in events)
            if all("personal_metric" in e for e in events)
            else None
        ),
        "aggregator": events[0]["aggregator"],
        **round_privacy(events),
        "nodes": {
            str(e["node"]): {
                "test_accuracy": e["test_accuracy"],
                "test_metric": e.get("test_metric", e["test_accuracy"]),
                "personal_metric": e.get("personal_metric"),
                "test_loss": e["test_loss"],
                "update_hash": e["update_hash"],
                "samples": e["samples"],
                "seconds": e["seconds"],
            }
            for e in events
        },
    }


def round_privacy(events: list[dict[str, Any]]) -> dict[str, float | None]:
    """The largest ``epsilon`` the nodes' round events report and its ``delta`` (both None
    when no event reports one: differential privacy off, or clipping only)."""
    spent = [e for e in events if e.get("epsilon") is not None]
    if not spent:
        return {"epsilon": None, "delta": None}
    worst = max(spent, key=lambda e: float(e["epsilon"]))
    return {"epsilon": float(worst["epsilon"]), "delta": float(worst["delta"])}


def write_summary(path: Path, summary: RunSummary) -> None:
    path.write_text(json.dumps(summary.to_json(), indent=2, sort_keys=True) + "\n")


def format_table(summary: RunSummary) -> str:
    """The human summary table printed at the end of a run."""
    header = (
        f"{'hospital':<15} {'samples':>7} {'local-only':>10} {'federated':>9} "
        f"{'contribution':>12} {'reward (ETH)':>12}"
    )
    lines = [header, "-" * len(header)]
    for h in summary.hospitals:
        federated = "-" if h.federated_accuracy is None else f"{h.federated_accuracy:.3f}"
        lines.append(
            f"{h.name:<15} {h.samples:>7} {h.local_only_accuracy:>10.3f} "
            f"{federated:>9} {h.contribution:>12} {h.reward_eth:>12.6f}"
        )
    lines.append("-" * len(header))
    lines.append(
        f"{'mean':<15} {'':>7} {summary.mean_local_only_accuracy:>10.3f} "
        f"{summary.final_mean_accuracy:>9.3f}"
    )
    if summary.epsilon is not None:
        lines.append(
            f"differential privacy: each hospital's updates spent epsilon "
            f"{summary.epsilon:.3f} at delta {summary.delta:g}"
        )
    return "\n".join(lines)
