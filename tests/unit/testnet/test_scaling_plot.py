"""The bench suite's scaling plot: a PNG from a results document, missing entries left out."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from testnet.scaling_plot import (
    DPI,
    Run,
    round_points,
    scaling_figure,
    traffic_bars,
    write_scaling_plot,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which follows the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def round_result(nodes: int, seconds: float, rss: list[float]) -> dict[str, Any]:
    return {
        "nodes": nodes,
        "params": 997_543,
        "round_seconds": seconds,
        "in_memory_round_seconds": 0.7,
        "peak_rss_mb": max(rss),
        "peak_rss_mb_each": {f"node-{i}": value for i, value in enumerate(rss)},
    }


def fog_run(nodes: int, mode: str, sent: float | None) -> dict[str, Any]:
    run: dict[str, Any] = {"nodes": nodes, "clusters": 2 if mode == "fog" else 1, "mode": mode}
    if sent is not None:
        run["bytes_sent"] = sent
    return run


DOCUMENT: dict[str, Any] = {
    "date": "2026-11-24T17:19:55+00:00",
    "commit": "abc1234",
    "command": "python bench/suite.py --quick",
    "machine": {"cpus": 2},
    "benches": {
        "gas": {"result": {"gas_per_hospital_round": 18_779.7}},
        "round-4x1M": {"result": round_result(4, 0.6, [490.0, 500.0, 495.0, 491.0])},
        "round-8x1M": {"result": round_result(8, 1.5, [510.0] * 8)},
        "round-16x1M": {"error": "no result within 600 s", "seconds": 600.0},
        "round-32x1M": {"result": {"nodes": 32, "params": 997_543}},  # no round time
        "fog-int8": {
            "result": {
                "codec": "int8",
                "runs": [fog_run(4, "flat", 761_870.6), fog_run(4, "fog", 1_252_989.2)],
            }
        },
        "fog-fp32": {"result": {"codec": "fp32", "runs": [fog_run(4, "flat", None), "not a run"]}},
    },
}


def test_round_entries_without_a_result_or_a_round_time_are_left_out() -> None:
    results = {name: row["result"] for name, row in DOCUMENT["benches"].items() if "result" in row}
    points = round_points(results)
    assert list(points) == [997_543]
    assert [p["nodes"] for p in points[997_543]] == [4, 8]


def test_fog_runs_are_read_by_codec_and_run_and_runs_without_bytes_left_out() -> None:
    results = {name: row["result"] for name, row in DOCUMENT["benches"].items() if "result" in row}
    assert traffic_bars(results) == {
        "int8": {Run(4, "flat", 1): 761_870.6, Run(4, "fog", 2): 1_252_989.2}
    }
    assert Run(8, "fog", 2).label() == "8 nodes, fog (2 clusters)"


def test_the_plot_is_a_png_of_the_figure_size(tmp_path: Path) -> None:
    path = write_scaling_plot(DOCUMENT, tmp_path / "plots" / "scaling.png")
    assert path == tmp_path / "plots" / "scaling.png"
    assert png_size(path) == (12 * DPI, 9 * DPI)  # a 12 x 9 inch figure


def test_a_document_with_nothing_to_plot_still_gives_a_png_saying_so(tmp_path: Path) -> None:
    document = {"benches": {"blob": {"error": "exit 1: no bulk channel", "seconds": 1.0}}}
    messages = [text.get_text() for ax in scaling_figure(document).axes for text in ax.texts]
    assert messages == ["no round-* results", "no peak RSS in round-* results", "no fog-* results"]
    png_size(write_scaling_plot({}, tmp_path / "empty.png"))
