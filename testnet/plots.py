"""The report's PNG plots: accuracy per round, contribution and reward, traffic and round time.

Figures are drawn with matplotlib's Agg canvas directly (no pyplot, no global backend state),
so the report can be written from any process, with or without a display.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator

from testnet.event_log import FaultEvent, RoundEvent
from testnet.run_data import HospitalRow, RunData

DPI = 110
FAULT_COLOUR = "#c0392b"
MEAN_COLOUR = "black"


def write_plots(run: RunData, plots_dir: Path) -> dict[str, Path]:
    """Write ``accuracy.png``, ``contribution.png`` and ``traffic.png``; return their paths."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    colours = colour_keys(run)
    paths = {
        "accuracy": plots_dir / "accuracy.png",
        "contribution": plots_dir / "contribution.png",
        "traffic": plots_dir / "traffic.png",
    }
    _save(accuracy_figure(run.events.rounds, run.faults, colours), paths["accuracy"])
    _save(contribution_figure(run.hospitals, colours), paths["contribution"])
    _save(traffic_figure(run.events.rounds, run.faults), paths["traffic"])
    return paths


def colour_keys(run: RunData) -> Callable[[str], str]:
    """A colour per hospital site, so a hospital has the same colour in every plot.

    The returned function takes a site name or a node name (a node's site comes from its
    round events) and falls back to the node name for nodes with no site.
    """
    node_site = {r.node: r.site for r in run.events.rounds if r.site}
    keys = sorted({h.site for h in run.hospitals} | set(node_site.values()))
    keys += sorted({r.node for r in run.events.rounds} - set(node_site))
    cycle = [f"C{i}" for i in range(10)]
    palette = {key: cycle[i % len(cycle)] for i, key in enumerate(keys)}

    def colour(name: str) -> str:
        return palette.get(node_site.get(name, name), "grey")

    return colour


def accuracy_figure(
    rounds: Sequence[RoundEvent], faults: Sequence[FaultEvent], colour: Callable[[str], str]
) -> Figure:
    """Test accuracy per node per round, the mean over nodes, and a marker at each fault."""
    fig, ax = _figure(9.0, 5.0)
    if not rounds:
        return _no_data(fig, ax, "no round events in events.jsonl")
    by_node: dict[str, list[RoundEvent]] = defaultdict(list)
    for event in rounds:
        by_node[event.node].append(event)
    for node in sorted(by_node):
        xs, ys = _with_gaps(by_node[node])
        ax.plot(
            xs,
            ys,
            marker="o",
            markersize=4,
            linewidth=1.4,
            color=colour(node),
            label=node,
        )
    means = _per_round(rounds, lambda values: statistics.fmean(values), "test_accuracy")
    ax.plot(
        list(means),
        list(means.values()),
        color=MEAN_COLOUR,
        linewidth=2.4,
        linestyle="--",
        label="mean",
    )
    _mark_faults(ax, faults, labelled=True)
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_title("Test accuracy per hospital")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if any(f.round is not None for f in faults):
        handles.append(_fault_handle())
    ax.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=9
    )
    return fig


def _with_gaps(events: Sequence[RoundEvent]) -> tuple[list[float], list[float]]:
    """One node's points by round, broken (NaN) across rounds it did not report."""
    xs: list[float] = []
    ys: list[float] = []
    for event in sorted(events, key=lambda e: e.round):
        if xs and event.round > xs[-1] + 1:
            xs.append(xs[-1] + 0.5)
            ys.append(math.nan)
        xs.append(event.round)
        ys.append(event.test_accuracy)
    return xs, ys


def _fault_handle() -> Line2D:
    return Line2D([], [], color=FAULT_COLOUR, linestyle=":", linewidth=1.3, label="fault")


def contribution_figure(hospitals: Sequence[HospitalRow], colour: Callable[[str], str]) -> Figure:
    """Bars per hospital: contribution score, reward in ETH, and reputation when present."""
    panels: list[tuple[str, str, list[float | None]]] = [
        ("Contribution", "contribution score", [h.contribution for h in hospitals]),
        ("Reward", "reward (ETH)", [h.reward_eth for h in hospitals]),
    ]
    if any(h.reputation is not None for h in hospitals):
        panels.append(("Reputation", "reputation", [h.reputation for h in hospitals]))
    fig = Figure(figsize=(4.0 * len(panels) + 1.0, 4.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    if not hospitals:
        for ax in axes:
            _no_data(fig, ax, "no hospitals in summary.json")
        return fig
    names = [h.name for h in hospitals]
    colours = [colour(h.site) for h in hospitals]
    for ax, (title, ylabel, values) in zip(axes, panels, strict=True):
        heights = [0.0 if v is None else v for v in values]
        bars = ax.bar(range(len(names)), heights, color=colours)
        ax.bar_label(bars, labels=[_short(v) for v in values], fontsize=8, padding=2)
        ax.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=9)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("hospital")
        ax.margins(y=0.15)
        ax.yaxis.set_major_formatter(FuncFormatter(_tick))
        ax.grid(axis="y", alpha=0.3)
    return fig


def traffic_figure(rounds: Sequence[RoundEvent], faults: Sequence[FaultEvent]) -> Figure:
    """Bytes sent per round (all nodes) above the slowest node's round time."""
    fig = Figure(figsize=(9.0, 5.6), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True)
    sent = _per_round(rounds, lambda values: sum(values), "bytes_sent")
    if sent:
        scale, unit = _byte_unit(max(sent.values()))
        top.bar(list(sent), [v / scale for v in sent.values()], color="C0", width=0.6)
        top.set_ylabel(f"bytes sent ({unit})")
        _mark_faults(top, faults, labelled=False)
        if any(f.round is not None for f in faults):
            fig.legend(handles=[_fault_handle()], loc="outside upper right", fontsize=8)
    else:
        _no_data(fig, top, "no bytes_sent in round events")
    top.set_title("Traffic per round (sum over nodes)")
    slowest = _per_round(rounds, lambda values: max(values), "seconds")
    if slowest:
        bottom.plot(list(slowest), list(slowest.values()), marker="o", color="C1")
        bottom.set_ylabel("round time (s)")
        bottom.set_ylim(bottom=0)
        _mark_faults(bottom, faults, labelled=False)
    else:
        _no_data(fig, bottom, "no round times in round events")
    bottom.set_title("Round time (slowest node)")
    bottom.set_xlabel("round")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    numbers = [e.round for e in rounds]
    if numbers:
        bottom.set_xlim(min(numbers) - 0.7, max(numbers) + 0.7)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    return fig


def _per_round(
    rounds: Sequence[RoundEvent], combine: Callable[[list[float]], float], field_name: str
) -> dict[int, float]:
    """``combine`` over the nodes' values of one field, per round (rounds without it skipped)."""
    values: dict[int, list[float]] = defaultdict(list)
    for event in rounds:
        value = getattr(event, field_name)
        if value is not None:
            values[event.round].append(float(value))
    return {number: combine(values[number]) for number in sorted(values)}


def _mark_faults(ax: Axes, faults: Sequence[FaultEvent], *, labelled: bool) -> None:
    """A dotted line at each round with a fault; labels on a second x axis along the top."""
    labels: dict[int, list[str]] = defaultdict(list)
    for fault in faults:
        if fault.round is not None:
            # "chain-restart chain" says nothing more than "chain-restart"
            node = "" if fault.node in fault.kind else fault.node
            labels[fault.round].append(f"{fault.kind} {node}".strip())
    for number in labels:
        ax.axvline(number, color=FAULT_COLOUR, linestyle=":", linewidth=1.3, alpha=0.8)
    if labelled and labels:
        top = ax.secondary_xaxis("top")
        rounds = sorted(labels)
        top.set_xticks(rounds, ["\n".join(labels[r]) for r in rounds])
        top.tick_params(axis="x", colors=FAULT_COLOUR, labelsize=8, rotation=30)
        for text in top.get_xticklabels():
            text.set_horizontalalignment("left")


def _figure(width: float, height: float) -> tuple[Figure, Axes]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots()


def _no_data(fig: Figure, ax: Axes, message: str) -> Figure:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _byte_unit(largest: float) -> tuple[float, str]:
    for power, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        if largest >= 1024**power:
            return float(1024**power), unit
    return 1.0, "B"


def _short(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _tick(value: float, _position: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:g}"


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, format="png", metadata={"Software": None})
