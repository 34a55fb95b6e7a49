"""The run report: PNG plots in ``plots/`` and one self-contained ``report.html``.

The page loads nothing from the network: plots are inline ``data:`` URIs and the CSS is in
the page, so it can be mailed or archived on its own.
"""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from testnet.html_tables import excluded_table, faults_table, hospitals_table, processes_table
from testnet.plots import write_plots
from testnet.run_data import RunData, load_run

log = logging.getLogger(__name__)

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em;
       color: #222; }
h1 { margin-bottom: 0.2em; }
.sub { color: #666; margin-top: 0; }
.banner { padding: 0.8em 1em; border-radius: 6px; font-size: 1.1em; margin: 1em 0; }
.banner code { font-size: 0.85em; word-break: break-all; }
.agree { background: #e3f4e6; border: 1px solid #5aa469; }
.disagree { background: #fbe4e2; border: 1px solid #c0392b; }
.unknown { background: #eee; border: 1px solid #999; }
.note { background: #fff6da; border: 1px solid #e0b84c; padding: 0.5em 1em; border-radius: 6px; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; margin: 1em 0; }
.figure { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1.2em; min-width: 8em; }
.figure .value { font-size: 1.6em; font-weight: 600; }
.figure .label { color: #666; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.95em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3em 0.8em; text-align: left; }
th { background: #f4f4f4; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 0.5em 0 1.5em; }
.empty { color: #666; font-style: italic; }
"""


def write_report(run_dir: Path) -> Path:
    """Write ``plots/*.png`` and ``report.html`` into ``run_dir``; return the HTML's path.

    Raises :class:`~testnet.errors.TestnetError` if ``run_dir`` is missing or holds neither
    ``summary.json`` nor any events.
    """
    run = load_run(run_dir)
    if run.events.malformed_lines:
        log.warning(
            "%s: skipped %d malformed line(s) in events.jsonl (first: line %d)",
            run_dir,
            run.events.malformed_lines,
            run.events.first_malformed_line,
        )
    plots = write_plots(run, run_dir / "plots")
    path = run_dir / "report.html"
    path.write_text(render_html(run, plots), encoding="utf-8")
    return path


def render_html(run: RunData, plots: dict[str, Path]) -> str:
    """The whole page as a string."""
    title = f"medswarm run: {run.scenario or run.run_dir.name}"
    events = run.events
    sections = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">{escape(_subtitle(run))}</p>',
        _banner(run),
        *_notes(run),
        _key_figures(run),
        "<h2>Accuracy</h2>",
        _image(plots["accuracy"], "Test accuracy per hospital per round"),
        "<h2>Hospitals</h2>",
        hospitals_table(run.hospitals) if run.hospitals else _empty("no hospitals in summary"),
        _image(plots["contribution"], "Contribution and reward per hospital"),
        "<h2>Faults</h2>",
        faults_table(run.faults, events.start_ts) if run.faults else _empty("no faults"),
        "<h2>Traffic and round time</h2>",
        _image(plots["traffic"], "Bytes sent and round time per round"),
        "<h2>Node processes</h2>",
        processes_table(events.processes, events.start_ts)
        if events.processes
        else _empty("no node-started or node-stopped events"),
        "<h2>Excluded updates</h2>",
        excluded_table(events.excluded, events.rounds)
        if events.excluded
        else _empty("no updates were excluded"),
    ]
    body = "\n".join(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def _subtitle(run: RunData) -> str:
    parts = [f"run directory {run.run_dir}"]
    if run.events.start_ts is not None:
        started = datetime.fromtimestamp(run.events.start_ts, tz=UTC)
        parts.append(f"started {started:%Y-%m-%d %H:%M:%S} UTC")
    return ", ".join(parts)


def _banner(run: RunData) -> str:
    digest = f" <code>{escape(run.final_global_hash)}</code>" if run.final_global_hash else ""
    if run.nodes_agree is True:
        return (
            '<div class="banner agree">&#10004; All live nodes ended on the same global model'
            f"{digest}</div>"
        )
    if run.nodes_agree is False:
        return (
            '<div class="banner disagree">&#10008; Nodes DISAGREE on the final global model'
            f"{digest}</div>"
        )
    return '<div class="banner unknown">Agreement on the final model is unknown</div>'


def _notes(run: RunData) -> list[str]:
    notes = []
    if not run.has_summary:
        notes.append("No summary.json: figures below are worked out from events.jsonl alone.")
    if run.events.malformed_lines:
        notes.append(
            f"Skipped {run.events.malformed_lines} malformed line(s) in events.jsonl "
            f"(first at line {run.events.first_malformed_line})."
        )
    return [f'<p class="note">{escape(note)}</p>' for note in notes]


def _key_figures(run: RunData) -> str:
    accuracy = run.final_mean_accuracy
    figures = [
        ("final mean accuracy", "–" if accuracy is None else f"{accuracy:.3f}"),
        ("rounds", "–" if run.rounds is None else str(run.rounds)),
        ("duration", _duration(run.seconds)),
        ("nodes", str(run.node_count)),
        ("faults", str(len(run.faults))),
        ("excluded updates", str(len(run.events.excluded))),
    ]
    if run.epsilon is not None:
        delta = "–" if run.delta is None else f"{run.delta:g}"
        figures.append((f"differential privacy ε at δ = {delta}", f"{run.epsilon:.3g}"))
    cards = "".join(
        f'<div class="figure"><div class="value">{escape(value)}</div>'
        f'<div class="label">{escape(label)}</div></div>'
        for label, value in figures
    )
    return f'<div class="figures">{cards}</div>'


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def _empty(message: str) -> str:
    return f'<p class="empty">{escape(message)}</p>'
