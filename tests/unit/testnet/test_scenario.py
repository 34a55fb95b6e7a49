import os
from pathlib import Path

import pytest

from node.data import resolve_data_dir
from testnet.attacks import ATTACKS
from testnet.errors import TestnetError
from testnet.scenario import load_scenario, scenario_from_dict, with_label_clusters

SCENARIOS = sorted(Path("testnet/scenarios").glob("*.toml"))


def minimal(**changes: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "name": "t",
        "rounds": 3,
        "nodes": [{"name": "a", "site": "cleveland"}, {"name": "b", "site": "va", "cluster": 1}],
        "faults": [{"kind": "crash", "node": "a", "round": 2, "restart_after": 1.0}],
    }
    raw.update(changes)
    return raw


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_load(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.nodes
    assert scenario.config.federation.rounds >= 1


def test_every_attack_has_a_scenario_of_eight_nodes_two_of_them_hostile() -> None:
    for attack in ATTACKS:
        scenario = load_scenario(Path(f"testnet/scenarios/attack-{attack}.toml"))
        hostile = {n.name: n.attack for n in scenario.nodes if n.attack}
        assert len(scenario.nodes) == 8
        assert hostile == {"cleveland-b": attack, "hungary-a": attack}


def test_outsiders_are_the_only_nodes_never_admitted() -> None:
    scenario = load_scenario(Path("testnet/scenarios/attack-outsider.toml"))
    assert sorted(n.name for n in scenario.nodes if not n.admitted) == ["cleveland-b", "hungary-a"]
    others = load_scenario(Path("testnet/scenarios/attack-oversized-blob.toml"))
    assert all(n.admitted for n in others.nodes)


def test_shipped_crash_restart_is_eight_nodes_in_two_clusters() -> None:
    scenario = load_scenario(Path("testnet/scenarios/crash-restart.toml"))
    assert len(scenario.nodes) == 8
    assert {n.cluster for n in scenario.nodes} == {0, 1}
    assert {f.kind for f in scenario.faults} == {"crash", "straggler"}


def test_values_reach_the_config() -> None:
    scenario = scenario_from_dict(minimal(federation={"update_timeout": 3.0}, seed=4))
    assert scenario.config.federation.rounds == 3
    assert scenario.config.federation.seed == 4
    assert scenario.config.federation.update_timeout == 3.0
    assert scenario.faults[0].restart_after == 1.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nodez": []}, "unknown key 'nodez'"),
        ({"nodes": []}, "at least one"),
        ({"faults": [{"kind": "crash", "node": "zz", "round": 2}]}, "unknown node 'zz'"),
        ({"faults": [{"kind": "melt", "node": "a", "round": 2}]}, "kind must be one of"),
        ({"faults": [{"kind": "crash", "node": "a", "round": 0}]}, "round must be"),
        ({"nodes": [{"name": "a", "site": "va", "cluster": 2}]}, "without gaps|no gap"),
        ({"nodes": [{"site": "va"}, {"site": "va"}]}, "unique"),
        ({"rounds": 0}, "at least 1"),
        ({"faults": [{"kind": "partition", "round": 2}]}, "needs sides"),
        ({"faults": [{"kind": "partition", "round": 2, "sides": [["a", "b"]]}]}, "needs sides"),
        ({"faults": [{"kind": "partition", "round": 2, "sides": [["a"], ["zz"]]}]}, "'zz'"),
        ({"faults": [{"kind": "partition", "round": 2, "sides": [["a"], ["a"]]}]}, "one side"),
        (
            {"faults": [{"kind": "crash", "node": "a", "round": 2, "sides": [["a"], ["b"]]}]},
            "partition faults only",
        ),
        ({"federation": {"round_attempts": -1}}, "round_attempts"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(Exception, match=message) as caught:
        scenario_from_dict(minimal(**changes))
    assert isinstance(caught.value, TestnetError | ValueError)


def test_a_partition_runs_nodes_in_namespaces() -> None:
    fault = {"kind": "partition", "round": 2, "duration": 9.0, "sides": [["a"], ["b"]]}
    scenario = scenario_from_dict(minimal(faults=[fault]))
    assert scenario.needs_namespaces
    assert scenario.faults[0].sides == (("a",), ("b",))
    assert not scenario_from_dict(minimal()).needs_namespaces


def test_auto_clusters_group_nodes_by_label_share() -> None:
    nodes = [{"name": s, "site": s} for s in ("cleveland", "hungarian", "switzerland", "va")]
    scenario = scenario_from_dict(minimal(nodes=nodes, faults=[], auto_clusters=2))
    grouped = with_label_clusters(scenario, resolve_data_dir(None, os.environ))
    # training label shares 0.457, 0.378, 1.0, 0.776: the two lower ones, the two higher ones
    assert [n.cluster for n in grouped.nodes] == [0, 0, 1, 1]
    shares = [n.label_share for n in grouped.nodes]
    assert shares == pytest.approx([0.4573, 0.3779, 1.0, 0.7765], abs=1e-4)
    assert (
        with_label_clusters(scenario_from_dict(minimal()), Path("/nonexistent")).nodes[1].cluster
        == 1
    )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"auto_clusters": 3}, "from 1 to the number of nodes"),
        ({"auto_clusters": "2"}, "auto_clusters must be"),
        ({"auto_clusters": 2}, r"drop the cluster key of \['b'\]"),
    ],
)
def test_bad_auto_clusters_say_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(TestnetError, match=message):
        scenario_from_dict(minimal(**changes))
