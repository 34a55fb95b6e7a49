"""bench/suite.py: reading each bench's JSON, the table, the CI run's choice and exit status,
the plot beside the results, and one real quick entry."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SUITE = Path(__file__).resolve().parents[2] / "bench" / "suite.py"


def load_suite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_suite", SUITE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


suite = load_suite()


def test_a_bench_result_is_read_whether_printed_on_one_line_or_indented() -> None:
    document = {"ratio": 0.345, "seconds": {"running_mean": 0.11}}
    # a bench that misses its target exits 1 but still gives its figures
    expected = {"result": document, "exit_code": 1}
    assert suite.parse_output(1, "starting\n" + json.dumps(document), "") == expected
    assert suite.parse_output(1, json.dumps(document, indent=2), "") == expected
    failed = suite.parse_output(2, "not json", "warning\nerror: the chain is down\n")
    assert failed == {"error": "exit 2: error: the chain is down"}
    assert suite.parse_output(0, "[1, 2]", "") == {"error": "exit 0: no output"}


def test_figures_are_found_by_dotted_paths_into_objects_and_lists() -> None:
    result = {"runs": [{"mode": "flat", "bytes": 10}, {"mode": "fog", "bytes": 4.5}], "n": 2}
    assert suite.figure(result, "runs.1.bytes") == 4.5
    assert suite.figure(result, "runs.2.bytes") is None
    assert suite.figure(result, "missing.path") is None
    assert (
        suite.headline(result, ("runs.0.mode", "runs.1.bytes"))
        == "runs.0.mode=flat  runs.1.bytes=4.5"
    )
    assert suite.headline(result, ()) == "n=2"  # no paths named: the top-level numbers


def test_every_entry_has_a_unique_name_and_quick_entries_are_smaller() -> None:
    names = [entry.name for entry in suite.PLAN]
    assert len(names) == len(set(names))
    assert {entry.full[0] for entry in suite.PLAN} == {
        "blob",
        "gossip",
        "aggregate",
        "secagg",
        "gas",
        "fog",
        "round",
    }
    skipped = [entry.name for entry in suite.PLAN if entry.quick is None]
    assert skipped == ["round-16x1M", "round-32x1M", "round-8x10M"]


def test_a_quick_entry_runs_for_real_and_lands_in_the_results_file(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    assert suite.main(["--quick", "--only", "secagg-4", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["quick"] is True and document["machine"]["cpus"] >= 1
    row = document["benches"]["secagg-4"]
    assert row["command"] == "medswarm bench secagg --members 4 --dropouts 1 --params 10000 --json"
    assert row["result"]["exact"] is True and row["result"]["members"] == 4
    assert list(document["benches"]) == ["secagg-4"]
    assert (tmp_path / "scaling.png").read_bytes()[:8] == PNG_SIGNATURE


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CI_NAMES = ["blob", "aggregate", "secagg-4", "gas", "fog-int8", "round-4x1M"]


def test_a_ci_run_makes_one_entry_of_each_kind_but_gossip_at_its_quick_size() -> None:
    chosen = suite.chosen_entries("ci")
    assert [entry.name for entry in chosen] == CI_NAMES
    quick = [entry.name for entry in suite.chosen_entries("quick")]
    assert set(CI_NAMES) < set(quick)
    fog = next(entry for entry in chosen if entry.name == "fog-int8")
    assert suite.arguments(fog, "ci") == (
        "fog", "--nodes", "4", "--params", "10000", "--rounds", "2", "--codec", "int8"
    )  # fmt: skip
    assert [entry.name for entry in suite.chosen_entries("ci", ["gas", "gossip"])] == ["gas"]


def test_time_limits_a_full_entry_a_sixth_of_it_quick_and_at_most_two_minutes_in_ci() -> None:
    (round_4,) = suite.chosen_entries("full", ["round-4x1M"])
    (gas,) = suite.chosen_entries("full", ["gas"])
    assert [suite.time_limit(round_4, mode) for mode in ("full", "quick", "ci")] == [
        3600.0,
        600.0,
        120.0,
    ]
    assert [suite.time_limit(gas, mode) for mode in ("full", "quick", "ci")] == [
        1800.0,
        300.0,
        120.0,
    ]


def fake_run(failing: set[str]) -> Any:
    """A stand-in for run_entry: every bench misses its target (exit 1), some fail."""

    def run_entry(entry: Any, mode: str) -> dict[str, Any]:
        assert mode == "ci"
        if entry.name in failing:
            return {"command": entry.name, "error": "exit 2: broken", "seconds": 0.1}
        return {"command": entry.name, "result": {"ratio": 0.1}, "exit_code": 1, "seconds": 0.1}

    return run_entry


def test_a_missed_target_passes_a_ci_run_and_a_failed_bench_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ci" / "latest.json"
    monkeypatch.setattr(suite, "run_entry", fake_run(set()))
    assert suite.main(["--ci", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert list(document["benches"]) == CI_NAMES
    assert document["command"] == "python bench/suite.py --ci"
    assert document["ci"] is True and document["quick"] is True
    assert (tmp_path / "ci" / "scaling.png").read_bytes()[:8] == PNG_SIGNATURE

    monkeypatch.setattr(suite, "run_entry", fake_run({"gas"}))
    assert suite.main(["--ci", "--out", str(out), "--plot", str(tmp_path / "p.png")]) == 1
    assert json.loads(out.read_text())["benches"]["gas"]["error"] == "exit 2: broken"
    assert (tmp_path / "p.png").read_bytes()[:8] == PNG_SIGNATURE


def test_the_plot_is_redrawn_from_a_results_file_without_running_a_bench(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_run(entry: Any, mode: str) -> dict[str, Any]:
        raise AssertionError(f"{entry.name} ran")

    monkeypatch.setattr(suite, "run_entry", no_run)
    results = tmp_path / "latest.json"
    results.write_text(json.dumps({"benches": {"gas": {"error": "exit 1: x", "seconds": 1}}}))
    assert suite.main(["--plot-only", str(results)]) == 0
    assert (tmp_path / "scaling.png").read_bytes()[:8] == PNG_SIGNATURE
    assert suite.main(["--plot-only", str(results), "--plot", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").read_bytes()[:8] == PNG_SIGNATURE


def test_a_ci_run_of_no_ci_entry_and_plot_only_with_benches_are_usage_errors() -> None:
    with pytest.raises(SystemExit) as no_entry:
        suite.main(["--ci", "--only", "gossip"])
    with pytest.raises(SystemExit) as both:
        suite.main(["--plot-only", "latest.json", "--only", "gas"])
    with pytest.raises(SystemExit) as exclusive:
        suite.main(["--ci", "--quick"])
    assert no_entry.value.code == both.value.code == exclusive.value.code == 2


def test_update_replaces_the_named_entries_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "latest.json"
    monkeypatch.setattr(suite, "run_entry", fake_run(set()))
    assert suite.main(["--ci", "--out", str(out)]) == 0
    first = json.loads(out.read_text())
    first["benches"]["aggregate"]["result"] = {"ratio": 0.3}
    out.write_text(json.dumps(first))

    def measured_again(entry: Any, mode: str) -> dict[str, Any]:
        return {"command": entry.name, "result": {"ratio": 0.7}, "exit_code": 0, "seconds": 1}

    monkeypatch.setattr(suite, "run_entry", measured_again)
    assert suite.main(["--ci", "--only", "aggregate", "--update", "--out", str(out)]) == 0
    updated = json.loads(out.read_text())
    assert updated["benches"]["aggregate"]["result"] == {"ratio": 0.7}
    assert updated["benches"]["gas"] == first["benches"]["gas"]  # kept as it was
    assert list(updated["benches"]) == CI_NAMES and updated["date"] == first["date"]


def test_update_needs_named_entries_and_a_results_file_of_the_same_size(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    out.write_text(json.dumps({"quick": False, "ci": False, "benches": {}}))
    with pytest.raises(SystemExit) as unnamed:
        suite.main(["--ci", "--update", "--out", str(out)])
    with pytest.raises(SystemExit) as other_size:
        suite.main(["--ci", "--only", "gas", "--update", "--out", str(out)])
    with pytest.raises(SystemExit) as missing:
        suite.main(["--only", "gas", "--update", "--out", str(tmp_path / "none.json")])
    assert unnamed.value.code == other_size.value.code == missing.value.code == 2
