"""Each attack against a federation of 8 hospitals, beside the clean run, in one table.

    python bench/attacks.py [--rounds 21] [--attackers 2] [--attacks sign-flip scaling ...]
                            [--seed N] [--out bench/results/attacks.json]

The attacks are testnet/attacks.py's ATTACKS (all of them by default). An ``outsider`` is
never admitted: it has no reputation, and the federation has 8 - --attackers members.

The federation is testnet/demo.toml (Fed-Heart-Disease, pooled statistics then SCAFFOLD, rounds
kept by the Consortium) with each of the four sites split into two nodes (8 nodes, clusters
{Cleveland, VA} and {Hungary, Switzerland}), update screening on and, unless
``--no-validation``, every member validating every update on its own rows. For each attack the
attackers are the first ``--attackers`` of cleveland-2, hungarian-1, va-1, switzerland-2 (so
both clusters are attacked). Every run is real: libp2p hosts on 127.0.0.1, the in-process EVM,
PyTorch. Prints one row per run and writes them as JSON.

An attack run's accuracy is the mean over the honest hospitals' test sets (excluded attackers
leave the federation), so it is compared with the clean run's mean over those same hospitals
(``clean_honest_accuracy``, ``accuracy_change``), not with its mean over all eight.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import trio

from incentive.consortium_audit import DEFAULT_EXCLUSION, audit_events
from incentive.events import EventLog
from node.config import load_config, with_overrides
from node.data import resolve_data_dir
from testnet.attacks import ATTACKS
from testnet.local import LocalRun, run_local_federation

CLUSTERS = (0, 0, 1, 1, 1, 1, 0, 0)  # cleveland-1/2, hungarian-1/2, switzerland-1/2, va-1/2
ATTACKER_ORDER = ("cleveland-2", "hungarian-1", "va-1", "switzerland-2")
EXCLUSION = DEFAULT_EXCLUSION  # the Consortium's default exclusionThreshold


def run_once(
    attack: str,
    attackers: tuple[str, ...],
    rounds: int,
    out: Path,
    **federation: Any,
) -> dict[str, Any]:
    config = load_config(Path("testnet/demo.toml"))
    config = with_overrides(
        config, rounds=rounds, update_timeout=10.0, screen_updates=True, **federation
    )
    started = time.monotonic()
    summary = trio.run(
        run_local_federation,
        LocalRun(
            config=config,
            nodes=8,
            shards=2,
            data_dir=resolve_data_dir(None, os.environ),
            out_dir=out,
            clusters=CLUSTERS,
            attack=attack,
            attackers=attackers,
        ),
    )
    audit = audit_events(EventLog.read_jsonl(out / "chain" / "events.jsonl").records())
    by_account = {m.account.lower(): m for m in audit.members.values()}
    total = sum(h.reward_wei for h in summary.hospitals)
    bad = [h for h in summary.hospitals if h.site in attackers]
    # an outsider was never admitted: no reputation, never excluded (None)
    on_chain = [by_account.get(h.address.lower()) for h in bad]
    below = []
    for member in on_chain:
        history = member.reputation_history if member else []
        first = next((r for r, value in history if value < EXCLUSION), None)
        below.append(first)
    honest = [h for h in summary.hospitals if h.site not in attackers]
    return {
        "attack": attack or "clean",
        "attackers": list(attackers),
        "final_mean_accuracy": summary.final_mean_accuracy,
        "honest_mean_accuracy": statistics.fmean(
            h.federated_accuracy for h in honest if h.federated_accuracy is not None
        ),
        "accuracy_by_site": {h.site: h.federated_accuracy for h in summary.hospitals},
        "attackers_reward_share": sum(h.reward_wei for h in bad) / total if total else 0.0,
        "attackers_reputation": [member.reputation if member else None for member in on_chain],
        "rounds_until_below_threshold": below,
        "nodes_agree": summary.nodes_agree,
        "honest_reputation_min": min(by_account[h.address.lower()].reputation for h in honest),
        "audit_ok": audit.ok,
        "seconds": round(time.monotonic() - started, 1),
    }


def against_clean(row: dict[str, Any], clean: dict[str, Any]) -> dict[str, float]:
    """The clean run's mean accuracy on the sites that are honest in ``row`` (the attack
    run's mean leaves out the attackers, which the clean run's covers), and the change."""
    honest = [s for s in clean["accuracy_by_site"] if s not in row["attackers"]]
    baseline = statistics.fmean(clean["accuracy_by_site"][s] for s in honest)
    return {
        "clean_honest_accuracy": baseline,
        "accuracy_change": row["honest_mean_accuracy"] - baseline,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--attackers", type=int, default=2, choices=range(1, 5))
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS)
    parser.add_argument("--aggregation", default="fedavg", help="federation.aggregation")
    parser.add_argument("--contribution", default="loss", help="federation.contribution")
    parser.add_argument(
        "--no-validation",
        action="store_true",
        help="federation.validate_updates = false (members do not validate updates)",
    )
    parser.add_argument("--no-clean", action="store_true", help="skip the clean run")
    parser.add_argument("--seed", type=int, default=None, help="federation.seed (default: demo's)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/attacks.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    attackers = ATTACKER_ORDER[: args.attackers]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        settings = {
            "aggregation": args.aggregation,
            "contribution": args.contribution,
            "validate_updates": not args.no_validation,
            "seed": args.seed,
        }
        for attack in [*([] if args.no_clean else [""]), *args.attacks]:
            chosen = attackers if attack else ()
            out = Path(scratch) / (attack or "clean")
            row = {**run_once(attack, chosen, args.rounds, out, **settings), **settings}
            if not args.no_clean:
                row.update(against_clean(row, rows[0] if rows else row))
            rows.append(row)
            clean = row.get("clean_honest_accuracy", float("nan"))
            honest = row["honest_mean_accuracy"]
            print(
                f"{row['attack']:<12} honest accuracy {honest:.4f} "
                f"(clean on the same sites {clean:.4f}, {honest - clean:+.4f})  "
                f"attackers' share {row['attackers_reward_share']:.4f}  reputation "
                f"{row['attackers_reputation']}  below {EXCLUSION} after round "
                f"{row['rounds_until_below_threshold']}  honest min reputation "
                f"{row['honest_reputation_min']}  agree {row['nodes_agree']}  "
                f"{row['seconds']:.0f} s",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"attackers": args.attackers, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
