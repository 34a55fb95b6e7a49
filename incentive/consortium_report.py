"""Exports of a :class:`~incentive.consortium_audit.ConsortiumAudit`: JSON, CSV and one HTML file.

The HTML report is self-contained (inline CSS and SVG, no scripts, no network): per hospital
its contribution, reputation, standing and rewards, a plot of reputation over rounds and one
of cumulative contribution, every round with its hashes and recorded privacy budget, and the
problems found.
"""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from incentive.consortium_audit import AuditedRound, ConsortiumAudit

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


def write_exports(audit: ConsortiumAudit, out: Path) -> list[Path]:
    """Write audit.json, members.csv, records.csv, payouts.csv and report.html into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "audit.json", out / "members.csv", out / "records.csv", out / "payouts.csv"]
    written[0].write_text(json.dumps(audit.as_dict(), indent=2), encoding="utf-8")
    with written[1].open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "index",
                "name",
                "account",
                "cluster",
                "role",
                "active",
                "excluded",
                "contribution",
                "reputation",
                "credited",
                "withdrawn",
            ]
        )
        for m in audit.members.values():
            w.writerow(
                [
                    m.index,
                    m.name,
                    m.account,
                    m.cluster,
                    m.role,
                    m.active,
                    m.excluded,
                    m.contribution,
                    m.reputation,
                    m.credited,
                    m.withdrawn,
                ]
            )
    with written[2].open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "round",
                "global_hash",
                "cluster",
                "aggregator",
                "records_root",
                "member",
                "name",
                "update_hash",
                "samples",
                "score",
                "rejected",
                "leaf",
                "proof",
            ]
        )
        for r in audit.rounds:
            for c in r.clusters:
                for x in c.records:
                    w.writerow(
                        [
                            r.round,
                            r.global_hash,
                            c.cluster,
                            c.aggregator,
                            c.records_root,
                            x.member,
                            audit.members[x.member].name,
                            x.update_hash,
                            x.samples,
                            x.score,
                            x.rejected,
                            x.leaf,
                            " ".join(x.proof),
                        ]
                    )
    with written[3].open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "pot", "paid", "dust", "member", "name", "credited", "recomputed"])
        for e in audit.epochs:
            for i in sorted(set(e.credits) | set(e.expected)):
                w.writerow(
                    [
                        e.epoch,
                        e.pot,
                        e.paid,
                        e.dust,
                        i,
                        audit.members[i].name,
                        e.credits.get(i, 0),
                        e.expected.get(i, 0),
                    ]
                )
    written.append(out / "report.html")
    written[-1].write_text(render_html(audit), encoding="utf-8")
    return written


def line_chart(
    title: str,
    series: dict[str, list[tuple[int, float]]],
    y_max: float,
    x_label: str = "round",
) -> str:
    """An SVG line chart: x = round (or ``x_label``), one polyline per series, a legend."""
    width, height, pad = 640, 240, 40
    legend = 130  # room right of the plot for the series' names
    rounds = [x for points in series.values() for x, _ in points] or [1]
    x_max = max(max(rounds), 1)
    y_max = y_max or 1.0

    def xy(x: int, y: float) -> str:
        return (
            f"{pad + (width - 2 * pad) * x / x_max:.1f},"
            f"{height - pad - (height - 2 * pad) * y / y_max:.1f}"
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + legend}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{pad}" y="20" font-size="14">{html.escape(title)}</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="{width - pad}" y="{height - 10}" font-size="11" text-anchor="end">'
        f"{html.escape(x_label)} {x_max}</text>",
        f'<text x="4" y="{pad + 4}" font-size="11">{y_max:g}</text>',
    ]
    for k, (name, points) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        if points:
            path = " ".join(xy(x, y) for x, y in points)
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>'
            )
        parts.append(
            f'<text x="{width - pad + 4}" y="{pad + 14 * k}" font-size="11" '
            f'fill="{colour}">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _privacy_cells(audited: AuditedRound) -> str:
    """The epsilon and delta cells of a round (two cells joined by ``</td><td>``)."""
    if audited.epsilon_e6 is None:
        return "not recorded</td><td>"
    if audited.epsilon is None:
        return "no guarantee</td><td>"
    return f"{audited.epsilon:.6f}</td><td>{audited.delta:g}"


def render_html(audit: ConsortiumAudit) -> str:
    members = list(audit.members.values())
    reputation = {
        m.name: [(0, 10_000.0)] + [(r, float(v)) for r, v in m.reputation_history]
        for m in members
        if m.role == 1
    }
    cumulative: dict[str, list[tuple[int, float]]] = {
        m.name: [(0, 0.0)] for m in members if m.role == 1
    }
    totals = {m.index: 0 for m in members}
    for r in audit.rounds:
        for c in r.clusters:
            for x in c.records:
                totals[x.member] += 0 if x.rejected else x.score
        for m in members:
            if m.role == 1:
                cumulative[m.name].append((r.round, float(totals[m.index])))
    top = max(totals.values(), default=0)
    rows = "".join(
        f"<tr><td>{m.index}</td><td>{html.escape(m.name)}</td><td><code>{m.account}</code></td>"
        f"<td>{m.cluster}</td><td>{m.contribution}</td><td>{m.reputation}</td>"
        f"<td>{'excluded' if m.excluded else 'active' if m.active else 'removed'}</td>"
        f"<td>{m.credited}</td><td>{m.withdrawn}</td></tr>"
        for m in members
    )
    round_rows = "".join(
        f"<tr><td>{r.round}</td><td><code>{r.global_hash}</code></td>"
        f"<td>{r.signatures}</td><td>{len(r.clusters)}</td>"
        f"<td>{sum(len(c.records) for c in r.clusters)}</td>"
        f"<td>{_privacy_cells(r)}</td></tr>"
        for r in audit.rounds
    )
    epoch_rows = "".join(
        f"<tr><td>{e.epoch}</td><td>{e.pot}</td><td>{e.paid}</td><td>{e.dust}</td>"
        f"<td>{'yes' if e.credits == e.expected else 'NO'}</td></tr>"
        for e in audit.epochs
    )
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in audit.problems) or "<li>none</li>"
    verdict = "every check passed" if audit.ok else f"{len(audit.problems)} problem(s) found"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medswarm consortium audit</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;
font-size:13px}}code{{font-size:11px}}</style></head><body>
<h1>Consortium audit: {verdict}</h1>
<p>{len(audit.rounds)} final rounds from genesis <code>{audit.genesis_hash}</code>;
{len(audit.epochs)} reward epochs; funded {audit.funded}, of which
{sum(p["amount"] for p in audit.model_payments)} in {len(audit.model_payments)} payment(s) for
using a model.</p>
<h2>Hospitals</h2><table><tr><th>index</th><th>name</th><th>account</th><th>cluster</th>
<th>contribution</th><th>reputation</th><th>standing</th><th>credited</th><th>withdrawn</th></tr>
{rows}</table>
{line_chart("reputation after each round", reputation, 10_000)}
{line_chart("cumulative contribution", cumulative, float(top))}
<h2>Rounds</h2><table><tr><th>round</th><th>global hash</th><th>signatures</th>
<th>clusters</th><th>records</th><th>epsilon</th><th>delta</th></tr>{round_rows}</table>
<h2>Reward epochs</h2><table><tr><th>epoch</th><th>pot</th><th>paid</th><th>dust</th>
<th>credits match the rule</th></tr>{epoch_rows}</table>
<h2>Problems</h2><ul>{problems}</ul>
</body></html>
"""
