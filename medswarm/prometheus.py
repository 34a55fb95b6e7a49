"""Figures in Prometheus's text exposition format (version 0.0.4), and a histogram to keep
latencies in.

Only what a node's ``GET /metrics`` needs: counters, gauges and histograms, each with a help
line, written in the order given. Label values and help text are escaped as the format
requires (backslash, double quote and line feed). :class:`Histogram` may be observed from
several threads (the chain client runs in worker threads).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

MetricType = Literal["counter", "gauge", "histogram"]
Labels = Mapping[str, str]


class Histogram:
    """Counts of observations at most each bucket's upper bound, their sum and count."""

    def __init__(self, bounds: Sequence[float]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must be distinct and increasing")
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * len(self.bounds)  # per bucket, not cumulative
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count one observation (seconds, bytes, ...)."""
        with self._lock:
            for index, bound in enumerate(self.bounds):
                if value <= bound:
                    self._counts[index] += 1
                    break
            self._sum += value
            self._count += 1

    def snapshot(self) -> HistogramSnapshot:
        """Cumulative bucket counts, sum and count, read together."""
        with self._lock:
            cumulative, running = [], 0
            for count in self._counts:
                running += count
                cumulative.append(running)
            return HistogramSnapshot(self.bounds, tuple(cumulative), self._sum, self._count)


@dataclass(frozen=True)
class HistogramSnapshot:
    """A histogram at one moment: ``buckets[i]`` observations were at most ``bounds[i]``."""

    bounds: tuple[float, ...]
    buckets: tuple[int, ...]
    sum: float
    count: int


@dataclass
class Metric:
    """One metric family: its samples, each a set of labels and a value (or a histogram)."""

    name: str
    type: MetricType
    help: str
    samples: list[tuple[Labels, float | HistogramSnapshot]] = field(default_factory=list)

    def add(self, value: float | HistogramSnapshot, **labels: str) -> Metric:
        """Add a sample with these labels; returns the metric, for chaining."""
        self.samples.append((labels, value))
        return self


def render(metrics: Iterable[Metric]) -> str:
    """The text exposition of ``metrics``; ends with a line feed."""
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.type}")
        for labels, value in metric.samples:
            if isinstance(value, HistogramSnapshot):
                lines.extend(_histogram_lines(metric.name, labels, value))
            else:
                lines.append(f"{metric.name}{_labels(labels)} {format_value(value)}")
    return "\n".join(lines) + "\n"


def _histogram_lines(name: str, labels: Labels, snapshot: HistogramSnapshot) -> list[str]:
    lines = [
        f"{name}_bucket{_labels({**labels, 'le': format_value(bound)})} {count}"
        for bound, count in zip(snapshot.bounds, snapshot.buckets, strict=True)
    ]
    lines.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {snapshot.count}")
    lines.append(f"{name}_sum{_labels(labels)} {format_value(snapshot.sum)}")
    lines.append(f"{name}_count{_labels(labels)} {snapshot.count}")
    return lines


def format_value(value: float) -> str:
    """A sample value as the format writes it: integers without a point, ``+Inf``, ``NaN``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in labels.items())
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")
