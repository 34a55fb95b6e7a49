"""bench/suite.py: reading each bench's JSON, the table, and one real quick entry."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

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
