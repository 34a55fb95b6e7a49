"""The bench suite's scaling plot: round time, memory and traffic against the node count.

:func:`write_scaling_plot` draws one PNG from a results document of ``bench/suite.py`` (the
dictionary written to ``bench/results/latest.json``), so the plot can be redrawn from any
results file without running a bench again. Three panels:

- round time per round against the number of node processes (``round-*`` entries, log-log),
  with the same learning in memory beside it, one colour per model size;
- the peak RSS of each node process against the number of node processes;
- bytes sent per node and round, flat against fog, per update codec (``fog-*`` entries).

An entry that failed, is missing, or lacks a figure is left out; a panel with nothing to show
says so. Drawn on matplotlib's Agg canvas without pyplot, as :mod:`testnet.plots` is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeGuard

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

DPI = 110
FOG_HATCH = "//"


class Run(NamedTuple):
    """One run of a fog bench: its node count, ``flat`` or ``fog``, and its clusters."""

    nodes: int
    mode: str
    clusters: int

    def label(self) -> str:
        if self.mode == "flat":
            return f"{self.nodes} nodes, flat"
        return f"{self.nodes} nodes, fog ({self.clusters} clusters)"


def write_scaling_plot(document: dict[str, Any], path: Path) -> Path:
    """Draw the scaling plot of a suite results document into ``path`` (PNG); return it."""
    fig = scaling_figure(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def scaling_figure(document: dict[str, Any]) -> Figure:
    """The three panels of :func:`write_scaling_plot` on one figure."""
    fig = Figure(figsize=(12.0, 9.0), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplot_mosaic([["time", "memory"], ["traffic", "traffic"]])
    results = _results(document)
    rounds = round_points(results)
    _round_time_panel(axes["time"], rounds)
    _memory_panel(axes["memory"], rounds)
    _traffic_panel(axes["traffic"], traffic_bars(results), _fog_model_size(results))
    fig.suptitle(_title(document))
    return fig


def round_points(results: dict[str, dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """The ``round-*`` results with a node count and a round time, by model size, by nodes."""
    by_size: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for name, result in results.items():
        if not name.startswith("round-"):
            continue
        nodes, params, seconds = (_number(result, k) for k in ("nodes", "params", "round_seconds"))
        if nodes is None or params is None or seconds is None:
            continue
        by_size[int(params)].append(result)
    return {
        size: sorted(points, key=lambda r: float(r["nodes"]))
        for size, points in sorted(by_size.items())
    }


def traffic_bars(results: dict[str, dict[str, Any]]) -> dict[str, dict[Run, float]]:
    """Bytes sent per node and round from the ``fog-*`` results: by codec, by run."""
    bars: dict[str, dict[Run, float]] = {}
    for name, result in results.items():
        if not name.startswith("fog-"):
            continue
        runs = result.get("runs")
        codec = str(result.get("codec", name.removeprefix("fog-")))
        for run in runs if isinstance(runs, list) else ():
            if not isinstance(run, dict) or run.get("mode") not in ("flat", "fog"):
                continue
            nodes, clusters, sent = (_number(run, k) for k in ("nodes", "clusters", "bytes_sent"))
            if nodes is not None and sent is not None:
                key = Run(int(nodes), str(run["mode"]), int(clusters or 1))
                bars.setdefault(codec, {})[key] = sent
    return bars


def _results(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each bench's result by name; entries with an error instead are left out."""
    benches = document.get("benches")
    if not isinstance(benches, dict):
        return {}
    return {
        name: row["result"]
        for name, row in benches.items()
        if isinstance(row, dict) and isinstance(row.get("result"), dict)
    }


def _number(result: dict[str, Any], key: str) -> float | None:
    """A positive number at ``key``, or None (missing, zero, or not a number)."""
    value = result.get(key)
    return float(value) if _is_positive(value) else None


def _round_time_panel(ax: Axes, rounds: dict[int, list[dict[str, Any]]]) -> None:
    ax.set_title("Round time against node processes")
    if not rounds:
        _no_data(ax, "no round-* results")
        return
    all_nodes: set[float] = set()
    for index, (size, points) in enumerate(rounds.items()):
        colour = _colour(index)
        nodes = [float(p["nodes"]) for p in points]
        all_nodes.update(nodes)
        label = f"{size:,} parameters"
        seconds = [float(p["round_seconds"]) for p in points]
        ax.plot(nodes, seconds, "o-", color=colour, label=label)
        for x, y in zip(nodes, seconds, strict=True):
            ax.annotate(
                f"{y:.2f} s", (x, y), xytext=(6, -10), textcoords="offset points", fontsize=8
            )
        baseline = [
            (n, _number(p, "in_memory_round_seconds")) for n, p in zip(nodes, points, strict=True)
        ]
        shown = [(n, s) for n, s in baseline if s is not None]
        if shown:
            ax.plot(
                [n for n, _ in shown],
                [s for _, s in shown],
                "s--",
                color=colour,
                alpha=0.6,
                markersize=5,
                label=f"{label}, in memory",
            )
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    _node_ticks(ax, all_nodes)
    ax.yaxis.set_major_formatter(FuncFormatter(_seconds))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: _two_and_five(v, p, _seconds)))
    ax.set_xlabel("node processes")
    ax.set_ylabel("seconds per round (median)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)


def _memory_panel(ax: Axes, rounds: dict[int, list[dict[str, Any]]]) -> None:
    ax.set_title("Peak RSS per node process")
    all_nodes: set[float] = set()
    for index, (size, points) in enumerate(rounds.items()):
        colour = _colour(index)
        nodes, largest = [], []
        for point in points:
            each = _peak_rss_each(point)
            if not each:
                continue
            count = float(point["nodes"])
            ax.scatter([count] * len(each), each, s=12, color=colour, alpha=0.35, linewidths=0)
            nodes.append(count)
            largest.append(max(each))
        if nodes:
            ax.plot(nodes, largest, "o-", color=colour, label=f"{size:,} parameters, largest")
            all_nodes.update(nodes)
    if not all_nodes:
        _no_data(ax, "no peak RSS in round-* results")
        return
    ax.set_xscale("log", base=2)
    _node_ticks(ax, all_nodes)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("node processes")
    ax.set_ylabel("peak RSS (MB; dots: each node, line: the largest)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def _peak_rss_each(result: dict[str, Any]) -> list[float]:
    """Each node's peak RSS in MB (``peak_rss_mb_each``), or the largest alone."""
    each = result.get("peak_rss_mb_each")
    values = list(each.values()) if isinstance(each, dict) else [result.get("peak_rss_mb")]
    return [float(v) for v in values if _is_positive(v)]


def _fog_model_size(results: dict[str, dict[str, Any]]) -> int | None:
    """The model's parameters in the ``fog-*`` results, if they all agree on one."""
    sizes = {r.get("params") for name, r in results.items() if name.startswith("fog-")}
    (size,) = sizes if len(sizes) == 1 else (None,)
    return size if isinstance(size, int) else None


def _traffic_panel(ax: Axes, bars: dict[str, dict[Run, float]], params: int | None) -> None:
    model = f", {params:,}-parameter model" if params else ""
    ax.set_title(f"Bytes sent per node and round, flat against fog (fog-* entries{model})")
    if not bars:
        _no_data(ax, "no fog-* results")
        return
    codecs = list(bars)
    series = sorted({run for by_run in bars.values() for run in by_run})
    node_counts = sorted({run.nodes for run in series})
    width = 0.8 / len(series)
    for index, run in enumerate(series):
        offset = (index - (len(series) - 1) / 2) * width
        shown = [
            (i, bars[codec][run] / 1e6) for i, codec in enumerate(codecs) if run in bars[codec]
        ]
        drawn = ax.bar(
            [i + offset for i, _ in shown],
            [megabytes for _, megabytes in shown],
            width=width,
            color=f"C{node_counts.index(run.nodes)}",
            alpha=0.5 if run.mode == "flat" else 0.95,
            hatch=FOG_HATCH if run.mode == "fog" else "",
            edgecolor="black",
            linewidth=0.5,
            label=run.label(),
        )
        labels = [f"{mb:.2f}" if mb >= 0.1 else f"{mb:.2g}" for _, mb in shown]
        ax.bar_label(drawn, labels=labels, fontsize=7, padding=1)
    ax.set_xticks(range(len(codecs)), [f"update codec {codec}" for codec in codecs])
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: _two_and_five(v, p, _plain)))
    ax.set_ylabel("MB sent per node and round (log scale)")
    ax.margins(y=0.12)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(fontsize=8, ncols=len(series))


def _node_ticks(ax: Axes, nodes: set[float]) -> None:
    ax.xaxis.set_major_locator(FixedLocator(sorted(nodes)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    if len(nodes) == 1:
        only = next(iter(nodes))
        ax.set_xlim(only / 1.5, only * 1.5)


def _title(document: dict[str, Any]) -> str:
    machine = document.get("machine")
    cpus = machine.get("cpus") if isinstance(machine, dict) else None
    parts = [
        str(document.get("command", "bench/suite.py")),
        str(document.get("date", "undated")),
        f"commit {document.get('commit', 'unknown')}",
    ]
    if cpus:
        parts.append(f"{cpus} cores")
    return ", ".join(parts)


def _colour(index: int) -> str:
    return f"C{index % 10}"


def _is_positive(value: object) -> TypeGuard[int | float]:
    return not isinstance(value, bool) and isinstance(value, int | float) and value > 0


def _no_data(ax: Axes, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _seconds(value: float, _position: float) -> str:
    return f"{value:g} s"


def _plain(value: float, _position: float) -> str:
    return f"{value:g}"


def _two_and_five(value: float, position: float, label: Callable[[float, float], str]) -> str:
    """Labels at 2 and 5 times a power of ten between a log axis's labelled decades."""
    leading = f"{value:e}"[0]
    return label(value, position) if leading in "25" else ""
