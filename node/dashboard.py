"""The read-only dashboard page the status server serves at ``GET /``.

One self-contained HTML page (no script, no external files; it reloads itself every 10 s):
the node's round and last global hash, the members with their cluster, contribution,
reputation and whether this node is connected to them, and the newest rounds this process
finished with their global hashes, times and test metric. Everything shown is escaped.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from node.round_book import Standing
from node.status_report import status_document

if TYPE_CHECKING:
    from node.hospital import HospitalNode

ROUNDS_SHOWN = 50
REFRESH_SECONDS = 10

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 2em; }
th, td { padding: 0.25em 0.75em; border-bottom: 1px solid #ddd; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.9em; }
"""


def dashboard_html(node: HospitalNode, standings: dict[str, Standing]) -> str:
    """The page for ``node``, with the members' standings as last read."""
    status = status_document(node, standings)
    members = "".join(
        "<tr>"
        f"<td>{_text(m['name'])}{' (this node)' if m['self'] else ''}</td>"
        f"<td><code>{_text(m['address'])}</code></td>"
        f"<td class=n>{_text(m['cluster'])}</td>"
        f"<td class=n>{_text(m['contribution'])}</td>"
        f"<td class=n>{_text(m['reputation'])}</td>"
        f"<td>{'yes' if m['connected'] else '-' if m['self'] else 'no'}</td>"
        "</tr>"
        for m in status["membership"]
    )
    rounds = "".join(
        "<tr>"
        f"<td class=n>{r.round}</td>"
        f"<td><code>{_text(r.global_hash)}</code></td>"
        f"<td class=n>{r.seconds:.2f}</td>"
        f"<td class=n>{_text(r.cluster)}</td>"
        f"<td><code>{_text(r.aggregator)}</code></td>"
        f"<td class=n>{_text(r.samples)}</td>"
        f"<td class=n>{_metric(r.test_metric)}</td>"
        "</tr>"
        for r in reversed(list(node.figures.rounds)[-ROUNDS_SHOWN:])
    )
    metric_name = node.figures.last.metric_name if node.figures.last else "metric"
    left = (
        f"<p><strong>Left the federation:</strong> {_text(status['left_federation'])}</p>"
        if status["left_federation"]
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>medswarm: {_text(status["node"])}</title><style>{_STYLE}</style></head>
<body>
<h1>{_text(status["node"])}</h1>
<p>Federation <strong>{_text(status["federation"])}</strong> ({_text(status["ledger"])});
round {status["current_round"]} under way, {status["completed_round"]} of {status["rounds"]}
final; last global model <code>{_text(status["last_global_hash"])}</code>;
{len(status["peers"]["connected"])} peers connected; {status["pending_transactions"]}
transactions pending.</p>
<p>Account <code>{_text(status["address"])}</code>, peer <code>{_text(status["peer_id"])}</code>.
Figures: <a href="/status">/status</a>, <a href="/metrics">/metrics</a>.</p>
{left}
<h2>Members</h2>
<table><tr><th>name</th><th>account</th><th>cluster</th><th>contribution</th>
<th>reputation</th><th>connected</th></tr>{members}</table>
<h2>Rounds</h2>
<table><tr><th>round</th><th>global hash</th><th>seconds</th><th>cluster</th>
<th>aggregator</th><th>samples</th><th>{_text(metric_name)}</th></tr>{rounds}</table>
</body></html>
"""


def _text(value: object) -> str:
    return "-" if value is None else escape(str(value))


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
