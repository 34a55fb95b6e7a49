"""The shipped CI scenario end to end: anvil, eight node processes, a crash and a straggler."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from medswarm.cli import main
from node.data import resolve_data_dir
from node.weights import decode_weights
from testnet.multiproc import MultiProcessTestnet
from testnet.scenario import load_scenario

pytestmark = pytest.mark.integration

SCENARIO = Path("testnet/scenarios/ci-smoke.toml")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("ci-smoke")
    testnet = MultiProcessTestnet(load_scenario(SCENARIO), out, resolve_data_dir(None, os.environ))
    return out, testnet.up()


def test_every_live_node_ends_on_the_final_hash(run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = run
    assert summary["nodes_agree"] is True
    assert summary["final_round"] == 10
    assert len(summary["hospitals"]) == 8
    assert all(h["finished"] for h in summary["hospitals"])
    assert {h["final_hash"] for h in summary["hospitals"]} == {summary["final_global_hash"]}
    model = Path(summary["final_model"])
    assert main(["audit", "verify", str(model), "--run-dir", str(out)]) == 0


def test_the_crashed_node_came_back_from_its_checkpoint(run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = run
    kinds = [(f["kind"], f["node"]) for f in summary["faults"]]
    assert kinds == [("crash", "hungary-a"), ("restart", "hungary-a"), ("straggler", "va-b")]
    hungary = read_jsonl(out / "nodes" / "hungary-a" / "events.jsonl")
    starts = [e for e in hungary if e["event"] == "node-started"]
    assert len(starts) == 2
    # Back from its own checkpoint, or (killed before writing one) resynced from peers;
    # a first start has neither.
    assert any(e["event"] in ("resumed", "resynced") for e in hungary)
    chain = read_jsonl(out / "chain" / "events.jsonl")
    address = next(h["address"] for h in summary["hospitals"] if h["name"] == "hungary-a")
    rounds = {
        e["args"]["round"]
        for e in chain
        if e["event"] == "UpdateRecorded" and e["args"]["member"] == address
    }
    assert set(range(6, 11)) <= rounds  # contributing again after the restart
    state = out / "nodes" / "hungary-a" / "state"
    checkpoint = json.loads((state / "checkpoint.json").read_text())
    assert checkpoint["local_hash"]  # its own intercept, beside the checkpoint
    assert (state / "local-layers.mswt").is_file()


def test_the_strategy_ran_with_pooled_statistics_and_local_layers(
    run: tuple[Path, dict[str, Any]],
) -> None:
    _, summary = run
    assert summary["strategy"]["name"] == "fedadam"
    blob = decode_weights(Path(summary["final_model"]).read_bytes())
    assert sorted(blob) == [
        "data/mean",
        "data/mean_square",
        "linear.weight",
        "server/m/linear.weight",
        "server/v/linear.weight",
    ]
    assert all(h["personal_metric"] is not None for h in summary["hospitals"])
    assert 0.5 < summary["final_mean_personal_metric"] <= 1.0


def test_nothing_is_recorded_twice_on_chain(run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = run
    chain = read_jsonl(out / "chain" / "events.jsonl")
    for name in ("UpdateRecorded", "Attested"):
        keys = Counter(
            (e["args"]["round"], e["args"]["member"]) for e in chain if e["event"] == name
        )
        assert keys and max(keys.values()) == 1, name
    clusters = Counter(
        (e["args"]["round"], e["args"]["cluster"]) for e in chain if e["event"] == "ClusterRecorded"
    )
    assert sorted(clusters) == [(r, c) for r in range(1, 11) for c in (0, 1)]
    assert max(clusters.values()) == 1


def test_the_run_directory_has_the_report(run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = run
    for name in ("events.jsonl", "summary.json", "report.html", "plots/accuracy.png"):
        assert (out / name).exists(), name
    events = read_jsonl(out / "events.jsonl")
    assert {e["event"] for e in events} >= {"round", "fault", "node-started", "node-finished"}
    assert summary["scenario"] == "ci-smoke"


def test_round_events_say_where_the_time_went(run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = run
    phases = ["registry", "train", "publish", "aggregates-recorded", "aggregates-fetched"]
    phases += ["combine", "attest", "finalize", "evaluate"]
    for event in (e for e in read_jsonl(out / "events.jsonl") if e["event"] == "round"):
        assert sorted(event["phase_seconds"]) == sorted(phases)
        assert sum(event["phase_seconds"].values()) <= event["seconds"] + 0.01
    # One aggregator per round and cluster, whose record is the one on chain.
    recorded = {
        (e["args"]["round"], e["args"]["cluster"]): e["args"]
        for e in read_jsonl(out / "chain" / "events.jsonl")
        if e["event"] == "ClusterRecorded"
    }
    duties = [e for e in read_jsonl(out / "events.jsonl") if e["event"] == "aggregated"]
    # (A node crashed between its record and its event would leave a record without one.)
    assert len(duties) >= len(recorded) - 1
    for duty in duties:
        record = recorded[(duty["round"], duty["cluster"])]
        assert str(record["aggregateHash"]).removeprefix("0x") == duty["aggregate_hash"]
        assert sorted(duty["phase_seconds"]) == ["announce", "average", "collect", "record", "wait"]
        assert duty["inputs"] >= 1


def test_no_process_is_left_running(run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = run
    pids = json.loads((out / "testnet.json").read_text())["pids"]
    for name, pid in pids.items():
        if pid is None:
            continue
        alive = Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)
        assert not alive, f"{name} (pid {pid}) still running"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_old_blobs_are_deleted_after_retain_rounds(run: tuple[Path, dict[str, Any]]) -> None:
    out, summary = run
    retain = load_scenario(SCENARIO).config.network.retain_rounds
    for hospital in summary["hospitals"]:
        blobs = [p for p in (out / "nodes" / hospital["name"] / "state" / "blobs").iterdir()]
        # Per round at most: own update, 3 cluster peers' updates, 2 aggregates, the model.
        assert 0 < len(blobs) <= 7 * retain + 1, hospital["name"]
        assert (
            out / "nodes" / hospital["name"] / "state" / "blobs" / hospital["final_hash"]
        ).is_file()
