"""``summary.json`` of a multi-process run: did the live nodes agree, and who got what."""

from __future__ import annotations

import dataclasses
import shutil
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testnet.keepers import Keeper
from testnet.report import round_privacy

if TYPE_CHECKING:
    from testnet.multiproc import NodeProcess
    from testnet.scenario import Scenario


def summarise_run(
    *,
    scenario: Scenario,
    out_dir: Path,
    keeper: Keeper,
    nodes: Sequence[NodeProcess],
    events: list[dict[str, Any]],
    faults: list[dict[str, Any]],
    seconds: float,
    pool_wei: int,
    credits: dict[str, int],
) -> dict[str, Any]:
    """Build the run summary from the chain (the truth) and the nodes' own events."""
    federation = scenario.config.federation
    final_round = int(keeper.last_finalized_round())
    final_hash = keeper.final_hash(final_round) if final_round else None
    stopped = {e["node"]: e for e in events if e.get("event") == "node-finished"}
    started = {e["node"]: e for e in events if e.get("event") == "node-started"}
    # Members the consortium excluded stop taking part; the others must agree.
    left = {e["node"]: str(e["reason"]) for e in events if e.get("event") == "left-federation"}
    finished_hashes = {str(e["global_hash"]) for n, e in stopped.items() if n not in left}
    nodes_agree = bool(stopped) and finished_hashes == {final_hash}
    model_path = _copy_final_model(out_dir, nodes, final_hash)
    last_round = {}
    for event in events:
        if event.get("event") == "round":
            last_round[str(event["node"])] = event
    hospitals: list[dict[str, Any]] = []
    for node in nodes:
        latest = last_round.get(node.spec.name, {})
        credit_key = next((a for a in credits if a.lower() == node.address.lower()), None)
        hospitals.append(
            {
                "name": node.spec.name,
                "site": node.spec.site,
                "cluster": node.spec.cluster,
                "label_share": node.spec.label_share,
                "address": node.address,
                "samples": latest.get("samples"),
                "federated_accuracy": latest.get("test_accuracy"),
                "metric": latest.get("test_metric", latest.get("test_accuracy")),
                "personal_metric": latest.get("personal_metric"),
                "finetune_steps": latest.get("finetune_steps"),
                "last_round": latest.get("round"),
                "contribution": int(keeper.contribution(node.address)),
                "reward_wei": credits.get(credit_key, 0) if credit_key else 0,
                "reward": credits.get(credit_key, 0) if credit_key else 0,
                "finished": node.spec.name in stopped,
                "final_hash": stopped.get(node.spec.name, {}).get("global_hash"),
                "startup_seconds": started.get(node.spec.name, {}).get("startup_seconds"),
                "rss_mb": stopped.get(node.spec.name, {}).get("rss_mb"),
                "peak_rss_mb": stopped.get(node.spec.name, {}).get("peak_rss_mb"),
            }
        )
    paid = sum(int(h["reward_wei"]) for h in hospitals)
    for hospital, node in zip(hospitals, nodes, strict=True):
        hospital["reward_eth"] = int(hospital["reward_wei"]) / 10**18
        hospital["reward_share"] = int(hospital["reward_wei"]) / paid if paid else 0.0
        hospital["reputation"] = keeper.reputation(node.address)  # None on the Ledger
        hospital["attack"] = node.spec.attack or None
        hospital["left_federation"] = left.get(node.spec.name)
    final_events = [e for e in last_round.values() if e.get("round") == final_round]
    final_accuracies = [float(e["test_accuracy"]) for e in final_events]
    # The task's headline metric (older event logs carry accuracy only).
    metric_name = str(final_events[0].get("metric_name", "accuracy")) if final_events else None
    final_metrics = [float(e.get("test_metric", e["test_accuracy"])) for e in final_events]
    # Each hospital's own model, when the strategy personalises (strategy.local_layers or
    # strategy.finetune_steps).
    personal = [float(e["personal_metric"]) for e in final_events if "personal_metric" in e]
    return {
        "scenario": scenario.name,
        "dataset": federation.dataset,
        "seed": federation.seed,
        "rounds": federation.rounds,
        "final_round": final_round,
        "nodes_agree": nodes_agree,
        "final_global_hash": final_hash,
        "final_model": str(model_path) if model_path else None,
        "final_mean_accuracy": statistics.fmean(final_accuracies) if final_accuracies else None,
        "metric_name": metric_name,
        "final_mean_metric": statistics.fmean(final_metrics) if final_metrics else None,
        "final_mean_personal_metric": statistics.fmean(personal) if personal else None,
        "strategy": dataclasses.asdict(scenario.config.strategy),
        # differential privacy: the epsilon the final round's events report, at delta
        **round_privacy(final_events),
        "seconds": round(seconds, 2),
        "faults": faults,
        "hospitals": hospitals,
        "chain": {"kind": "anvil", **keeper.addresses(), "reward_pool_wei": pool_wei},
    }


def _copy_final_model(
    out_dir: Path, nodes: Sequence[NodeProcess], digest: str | None
) -> Path | None:
    if not digest:
        return None
    for node in nodes:
        blob = node.directory / "state" / "blobs" / digest
        if blob.is_file():
            target = out_dir / "model-final.bin"
            shutil.copyfile(blob, target)
            return target
    return None
