"""The run report: plots and a self-contained report.html from a synthetic run directory."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from medswarm.cli import main
from medswarm.errors import MedswarmError
from testnet.html_report import write_report

START = 1_700_000_000.0
NODES = [
    ("cleveland-1", "cleveland", "Cleveland Clinic", "0xAaA0000000000000000000000000000000000001"),
    (
        "hungarian-2",
        "hungarian",
        "Hungarian Institute",
        "0xbBb0000000000000000000000000000000000002",
    ),
    (
        "switzerland-3",
        "switzerland",
        "University Hospital Zurich",
        "0xCcC00000000000000000000000000000000003",
    ),
]
FINAL_HASH = "ab" * 32
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def round_event(ts: float, number: int, node: int, accuracy: float) -> dict[str, Any]:
    name, site, display, address = NODES[node]
    return {
        "ts": START + ts,
        "event": "round",
        "round": number,
        "node": name,
        "site": site,
        "display_name": display,
        "cluster": 0,
        "address": address,
        "aggregator": NODES[number % 3][3],
        "update_hash": f"{number:02d}{node:02d}" * 16,
        "samples": 200 + 10 * node,
        "global_hash": FINAL_HASH if number == 4 else f"{number:064x}",
        "test_accuracy": accuracy,
        "test_loss": 1.0 - accuracy,
        "seconds": 2.0 + node + (3.0 if number == 3 else 0.0),
        "bytes_sent": 50_000 * (node + 1),
        "bytes_received": 40_000,
        "gpu": "none",  # an unknown extra field: ignored
    }


def write_run(run_dir: Path, *, summary: bool = True, agree: bool = True) -> None:
    """3 nodes, 4 rounds; hungarian-2 crashes in round 2 and restarts in round 3."""
    run_dir.mkdir()
    lines: list[str] = []

    def add(event: dict[str, Any]) -> None:
        lines.append(json.dumps(event))

    for node, (name, _, _, _) in enumerate(NODES):
        add(
            {
                "ts": START + 0.1 * node,
                "event": "node-started",
                "node": name,
                "pid": 4100 + node,
                "rss_mb": 180.5 + node,
                "startup_seconds": 1.25 + node,
            }
        )
    accuracy: dict[int, list[float | None]] = {
        1: [0.60, 0.55, 0.50],
        2: [0.70, None, 0.60],
        3: [0.75, 0.62, 0.68],
        4: [0.80, 0.70, 0.75],
    }
    for number in range(1, 5):
        if number == 2:
            add(
                {
                    "ts": START + 12.5,
                    "event": "fault",
                    "node": "hungarian-2",
                    "kind": "crash",
                    "round": 2,
                    "detail": "SIGKILL",
                }
            )
            add(
                {
                    "ts": START + 12.6,
                    "event": "node-stopped",
                    "node": "hungarian-2",
                    "pid": 4101,
                    "rss_mb": 250.0,
                }
            )
        if number == 3:
            add(
                {
                    "ts": START + 20.0,
                    "event": "fault",
                    "node": "hungarian-2",
                    "kind": "restart",
                    "round": 3,
                    "detail": "back after 7.5 s",
                }
            )
            add(
                {
                    "ts": START + 20.1,
                    "event": "node-started",
                    "node": "hungarian-2",
                    "pid": 4200,
                    "rss_mb": 190.0,
                    "startup_seconds": 2.5,
                }
            )
            add(
                {
                    "ts": START + 24.0,
                    "event": "excluded",
                    "round": 3,
                    "node": "cleveland-1",
                    "member": NODES[2][3].lower(),
                    "reason": "blob hash mismatch",
                }
            )
        for node in range(3):
            value = accuracy[number][node]
            if value is not None:
                add(round_event(10.0 * number + node, number, node, value))
    add({"ts": START + 41.0, "event": "gossip-stats", "node": "launcher"})  # unknown kind
    lines.insert(5, '{"ts": 1700000005.0, "event": "round", "node": "cleveland-1"')  # torn line
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n")
    if summary:
        hospitals = [
            {
                "name": display,
                "site": site,
                "address": address,
                "samples": 200 + 10 * i,
                "local_only_accuracy": 0.5 + 0.05 * i,
                "federated_accuracy": [0.8, 0.7, 0.75][i],
                "contribution": [5000, 1000, 3000][i],
                "reward_wei": [5, 1, 3][i] * 10**17,
                "reward_eth": [5, 1, 3][i] / 10,
                "reputation": [0.9, 0.4, 0.7][i],
            }
            for i, (_, site, display, address) in enumerate(NODES)
        ]
        data = {
            "scenario": "crash-and-restart",
            "final_mean_accuracy": 0.75,
            "final_global_hash": FINAL_HASH,
            "nodes_agree": agree,
            "rounds": 4,
            "seconds": 42.0,
            "hospitals": hospitals,
        }
        (run_dir / "summary.json").write_text(json.dumps(data))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("report") / "run"
    write_run(run_dir)
    path = write_report(run_dir)
    return run_dir, path.read_text(encoding="utf-8")


def test_writes_three_valid_plots(report: tuple[Path, str]) -> None:
    run_dir, _ = report
    for name in ("accuracy", "contribution", "traffic"):
        path = run_dir / "plots" / f"{name}.png"
        width, height = png_size(path)
        assert 600 <= width <= 2000 and 300 <= height <= 1200, (name, width, height)
        assert 10_000 < path.stat().st_size < 500_000


def test_page_is_self_contained(report: tuple[Path, str]) -> None:
    run_dir, html = report
    assert (run_dir / "report.html").exists()
    assert html.count("data:image/png;base64,") == 3
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html and "<link" not in html


def test_title_banner_and_key_figures(report: tuple[Path, str]) -> None:
    _, html = report
    assert "<title>medswarm run: crash-and-restart</title>" in html
    assert "All live nodes ended on the same global model" in html
    assert FINAL_HASH in html
    assert ">0.750<" in html  # final mean accuracy
    assert "42.0 s" in html


def test_hospital_rows(report: tuple[Path, str]) -> None:
    _, html = report
    assert "<td>Cleveland Clinic</td><td>cleveland</td>" in html
    assert "<td>University Hospital Zurich</td>" in html
    assert (
        '<td class="num">5,000</td><td class="num">0.500000</td><td class="num">0.900</td>' in html
    )


def test_fault_rows_timed_from_the_start(report: tuple[Path, str]) -> None:
    _, html = report
    assert (
        '<td class="num">+12.5 s</td><td class="num">2</td><td>crash</td>'
        "<td>hungarian-2</td><td>SIGKILL</td>"
    ) in html
    assert "<td>restart</td><td>hungarian-2</td><td>back after 7.5 s</td>" in html


def test_processes_excluded_and_malformed_line(report: tuple[Path, str]) -> None:
    _, html = report
    # hungarian-2's first process stops at +12.6 s with 250 MB; its second one never stops.
    assert '<td>hungarian-2</td><td class="num">4101</td>' in html
    assert '<td class="num">+12.6 s</td><td class="num">250.0</td>' in html
    assert '<td class="num">4200</td><td class="num">+20.1 s</td><td class="num">2.50</td>' in html
    # the excluded member is named by the address in its own round events (case-insensitive)
    assert f"switzerland-3 ({NODES[2][3].lower()})" in html
    assert "blob hash mismatch" in html
    assert "Skipped 1 malformed line(s) in events.jsonl (first at line 6)" in html


def test_disagreement_is_the_banner(tmp_path: Path) -> None:
    write_run(tmp_path / "run", agree=False)
    html = write_report(tmp_path / "run").read_text()
    assert "Nodes DISAGREE on the final global model" in html
    assert "All live nodes ended" not in html


def test_events_alone_are_enough(tmp_path: Path) -> None:
    write_run(tmp_path / "run", summary=False)
    html = write_report(tmp_path / "run").read_text()
    assert "No summary.json" in html
    assert "All live nodes ended on the same global model" in html  # round 4: one hash
    assert f"{(0.80 + 0.70 + 0.75) / 3:.3f}" in html
    assert "<title>medswarm run: run</title>" in html


def test_missing_or_empty_run_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MedswarmError, match="does not exist"):
        write_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedswarmError, match="nothing to report"):
        write_report(tmp_path / "empty")


def test_cli_prints_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_run(tmp_path / "run")
    assert main(["testnet", "report", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run" / "report.html")


def test_cli_empty_run_dir_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["testnet", "report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: run directory") and "Traceback" not in err


def test_the_privacy_spent_is_a_key_figure_when_the_summary_has_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    write_run(run_dir)
    assert "differential privacy" not in write_report(run_dir).read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "summary.json").write_text(json.dumps({**summary, "epsilon": 2.5, "delta": 1e-5}))
    html = write_report(run_dir).read_text()
    assert (
        '<div class="value">2.5</div><div class="label">differential privacy ε at δ = 1e-05' in html
    )
