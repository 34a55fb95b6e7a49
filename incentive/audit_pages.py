"""The pages of the auditors' dashboard (``medswarm audit serve``), from an
:class:`~incentive.audit_view.AuditView`.

    overview_page     the audit's verdict, hospitals (contribution, reputation, rewards), charts
                      of reputation, contribution and rewards over time, rounds, epochs, problems
    lineage_page      one round's global model: the rounds it builds on back to genesis, each
                      cluster's aggregate, aggregator and the hospitals' updates
    uses_page         where a hash appears as a cluster aggregate or a hospital's update
    hospital_page     one hospital: its updates round by round, reputation, rewards by epoch
    message_page      a short page for "not found" and the like

Self-contained HTML: inline CSS and SVG, no scripts, no external files. Every value shown is
escaped; links carry only hex hashes, round numbers and addresses taken from the audit.
"""

from __future__ import annotations

from html import escape

from incentive.audit_view import AuditView, ClusterView, MemberView, RoundView, UpdateView
from incentive.consortium_report import line_chart

WEI_PER_ETH = 10**18

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #222; }
nav { margin-bottom: 1em; } nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code { font-size: 0.85em; } .bad { color: #b00; } .good { color: #070; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
"""


def overview_page(view: AuditView, note: str = "") -> str:
    """The dashboard's front page."""
    verdict = (
        '<span class="good" id="verdict">every check passed</span>'
        if view.ok
        else f'<span class="bad" id="verdict">{len(view.problems)} problem(s) found</span>'
    )
    contracts = ", ".join(
        f"{escape(name)} <code>{escape(address)}</code>" for name, address in view.contracts.items()
    )
    members = "".join(_member_row(m) for m in view.members)
    hospitals = [m for m in view.members if m.standing != "auditor"]
    charts = [
        line_chart(
            "cumulative contribution",
            {
                m.name: [(0, 0.0)] + [(r, float(v)) for r, v in m.contribution_history]
                for m in hospitals
            },
            float(max((m.contribution for m in hospitals), default=0)),
        )
    ]
    if view.kind == "consortium":
        charts.insert(
            0,
            line_chart(
                "reputation after each round",
                {
                    m.name: [(0, 10_000.0)] + [(r, float(v)) for r, v in m.reputation_history]
                    for m in hospitals
                },
                10_000,
            ),
        )
    if view.epochs:
        charts.append(
            line_chart(
                "cumulative reward (ETH)",
                _rewards(view, hospitals),
                max(m.credited for m in hospitals) / WEI_PER_ETH,
                "epoch",
            )
        )
    rounds = "".join(_round_row(r) for r in reversed(view.rounds))
    names = {m.account: m.name for m in view.members}
    epochs = "".join(
        f"<tr><td class=n>{e.epoch}</td><td class=n>{e.paid}</td><td class=n>{e.dust}</td>"
        f"<td>{'yes' if e.matches_rule else '<span class=bad>NO</span>'}</td><td>"
        + ", ".join(f"{escape(names.get(a, a))} {v}" for a, v in e.credits.items())
        + "</td></tr>"
        for e in view.epochs
    )
    body = f"""<h1>Federation audit: {verdict}</h1>
<p>{escape(view.kind)} federation from {escape(view.source)}{_chain(view)};
{len(view.rounds)} rounds from genesis <code>{_text(view.genesis_hash)}</code>;
{len(view.epochs)} reward epochs; {view.funded} wei funded.</p>
<p>{contracts}</p>
<h2>Hospitals</h2>
<table id="hospitals"><tr><th>hospital</th><th>account</th><th>cluster</th><th>standing</th>
<th>contribution</th><th>reputation</th><th>credited (wei)</th><th>ETH</th>
<th>withdrawn (wei)</th></tr>{members}</table>
<div class="charts">{"".join(charts)}</div>
<h2>Rounds</h2>
<table id="rounds"><tr><th>round</th><th>global model</th><th>signatures</th><th>clusters</th>
<th>updates</th><th>samples</th><th>privacy</th></tr>{rounds}</table>
<h2>Reward epochs</h2>
<table id="epochs"><tr><th>epoch</th><th>paid (wei)</th><th>dust (wei)</th>
<th>credits match the rule</th><th>credits (wei)</th></tr>{epochs}</table>
<h2>Problems</h2>
<ul id="problems">{_problems(view)}</ul>"""
    return _page("medswarm audit", body, note)


def lineage_page(view: AuditView, round_view: RoundView, note: str = "") -> str:
    """Where a round's global model came from."""
    ancestry = view.ancestry(round_view)
    chain = " &larr; ".join(
        f'<a href="/round/{r.round}">round {r.round}</a> <code>{_short(r.global_hash)}</code>'
        for r in ancestry
    )
    last = ancestry[-1]
    if last.previous_hash == view.genesis_hash:
        chain += f" &larr; genesis <code>{_short(last.previous_hash)}</code>"
    else:
        chain += f" &larr; <span class=bad>unknown model <code>{_text(last.previous_hash)}</code>"
        chain += "</span>"
    later = next((r for r in view.rounds if r.previous_hash == round_view.global_hash), None)
    next_link = f' Next: <a href="/round/{later.round}">round {later.round}</a>.' if later else ""
    hospitals = sorted({u.name for c in round_view.clusters for u in c.updates if not u.rejected})
    state = "final" if round_view.final else '<span class="bad">not final</span>'
    body = f"""<h1>Round {round_view.round}: global model
<code id="global-hash">{_text(round_view.global_hash)}</code></h1>
<p>{state}; block {_text(round_view.block)}; transaction
<code>{_text(round_view.transaction)}</code>; {round_view.signatures} signature(s);
{_privacy(round_view)}.{next_link}</p>
<p>Built on: {chain}</p>
<p>Hospitals whose accepted updates went into it: {escape(", ".join(hospitals) or "none")}.</p>
{"".join(_cluster_section(c) for c in round_view.clusters)}"""
    return _page(f"round {round_view.round}", body, note)


def uses_page(
    view: AuditView, digest: str, uses: list[tuple[RoundView, ClusterView, UpdateView | None]]
) -> str:
    """Rounds where ``digest`` is a cluster aggregate or a hospital's update."""
    rows = "".join(
        f'<tr><td><a href="/round/{r.round}">round {r.round}</a></td><td class=n>{c.cluster}</td>'
        + (
            f"<td>aggregate by {_hospital_link(c.aggregator, c.aggregator_name)}</td>"
            if u is None
            else f"<td>update of {_hospital_link(u.account, u.name)}</td>"
        )
        + "</tr>"
        for r, c, u in uses
    )
    body = f"""<h1>Hash <code>{escape(digest)}</code></h1>
<p>Not the global model of any round; it appears in these rounds:</p>
<table><tr><th>round</th><th>cluster</th><th>as</th></tr>{rows}</table>"""
    return _page("hash", body)


def hospital_page(view: AuditView, member: MemberView) -> str:
    """One hospital's updates, standing and rewards."""
    reputation = dict(member.reputation_history)
    rows = []
    for r in view.rounds:
        for c in r.clusters:
            for u in c.updates:
                if u.account == member.account:
                    rows.append(
                        f'<tr><td><a href="/round/{r.round}">{r.round}</a></td>'
                        f"<td class=n>{c.cluster}</td><td><code>{escape(u.update_hash)}</code></td>"
                        f"<td class=n>{u.samples}</td><td class=n>{u.score}</td>"
                        f"<td>{'rejected' if u.rejected else 'accepted'}</td>"
                        f"<td class=n>{_text(reputation.get(r.round))}</td></tr>"
                    )
    aggregated = ", ".join(
        f'<a href="/round/{r.round}">{r.round}</a>'
        for r in view.rounds
        if any(c.aggregator == member.account for c in r.clusters)
    )
    credits = "".join(
        f"<tr><td class=n>{e.epoch}</td><td class=n>{e.credits.get(member.account, 0)}</td></tr>"
        for e in view.epochs
    )
    body = f"""<h1>{escape(member.name)}</h1>
<p>Account <code>{escape(member.account)}</code>, cluster {member.cluster},
{escape(member.standing)}; contribution <span id="contribution">{member.contribution}</span>,
reputation {_text(member.reputation)}, credited <span id="credited">{member.credited}</span> wei,
withdrawn {member.withdrawn} wei.</p>
<p>Aggregated rounds: {aggregated or "none"}.</p>
<h2>Updates</h2>
<table><tr><th>round</th><th>cluster</th><th>update hash</th><th>samples</th><th>score</th>
<th>verdict</th><th>reputation after</th></tr>{"".join(rows)}</table>
<h2>Rewards</h2>
<table><tr><th>epoch</th><th>credited (wei)</th></tr>{credits}</table>"""
    return _page(member.name, body)


def message_page(title: str, message: str) -> str:
    """A page saying one thing (not found, bad input)."""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>")


def _page(title: str, body: str, note: str = "") -> str:
    shown = f'<p class="bad" id="note">{escape(note)}</p>' if note else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<title>{escape(title)}</title><style>{_STYLE}</style></head>
<body>
<nav><a href="/">overview</a><a href="/audit.json">audit.json</a>
<form action="/model" method="get" style="display:inline">
<label>model hash <input name="hash" size="66" pattern="(0x)?[0-9a-fA-F]{{64}}" required></label>
<button type="submit">trace</button></form></nav>
{shown}
{body}
</body></html>
"""


def _member_row(m: MemberView) -> str:
    return (
        f"<tr><td>{_hospital_link(m.account, m.name)}</td><td><code>{escape(m.account)}</code></td>"
        f"<td class=n>{m.cluster}</td><td>{escape(m.standing)}</td>"
        f"<td class=n>{m.contribution}</td><td class=n>{_text(m.reputation)}</td>"
        f"<td class=n>{m.credited}</td><td class=n>{m.credited / WEI_PER_ETH:.6f}</td>"
        f"<td class=n>{m.withdrawn}</td></tr>"
    )


def _round_row(r: RoundView) -> str:
    model = _hash_link(r.global_hash) if r.global_hash else "not final"
    updates = sum(len(c.updates) for c in r.clusters)
    samples = sum(c.total_samples for c in r.clusters)
    return (
        f'<tr><td class=n><a href="/round/{r.round}">{r.round}</a></td><td>{model}</td>'
        f"<td class=n>{r.signatures}</td><td class=n>{len(r.clusters)}</td>"
        f"<td class=n>{updates}</td><td class=n>{samples}</td><td>{_privacy(r)}</td></tr>"
    )


def _cluster_section(c: ClusterView) -> str:
    rows = "".join(
        f"<tr><td>{_hospital_link(u.account, u.name)}</td>"
        f"<td>{_hash_link(u.update_hash)}</td><td class=n>{u.samples}</td>"
        f"<td class=n>{u.score}</td><td>{'rejected' if u.rejected else 'accepted'}</td></tr>"
        for u in c.updates
    )
    return f"""<h2>Cluster {c.cluster}</h2>
<p>Aggregate {_hash_link(c.aggregate_hash)} by
{_hospital_link(c.aggregator, c.aggregator_name)} from {c.total_samples} samples; records root
<code>{escape(c.records_root)}</code>.</p>
<table class="updates"><tr><th>hospital</th><th>update hash</th><th>samples</th><th>score</th>
<th>verdict</th></tr>{rows}</table>"""


def _hash_link(digest: str) -> str:
    """A hash linked to the page of where it was used."""
    return f'<a href="/model/{escape(digest)}"><code>{escape(digest)}</code></a>'


def _hospital_link(account: str, name: str) -> str:
    return f'<a href="/hospital/{escape(account)}">{escape(name)}</a>'


def _rewards(view: AuditView, hospitals: list[MemberView]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for m in hospitals:
        total = 0
        series[m.name] = [(0, 0.0)]
        for e in view.epochs:
            total += e.credits.get(m.account, 0)
            series[m.name].append((e.epoch, total / WEI_PER_ETH))
    return series


def _privacy(r: RoundView) -> str:
    if not r.privacy_recorded:
        return "privacy budget not recorded"
    if r.epsilon is None:
        return "no differential-privacy guarantee"
    return f"epsilon {r.epsilon:.6f} at delta {r.delta:g}"


def _problems(view: AuditView) -> str:
    return "".join(f"<li>{escape(p)}</li>" for p in view.problems) or "<li>none</li>"


def _chain(view: AuditView) -> str:
    return "" if view.chain_id is None else f" (chain id {view.chain_id})"


def _short(value: str | None) -> str:
    return "-" if value is None else escape(value[:16])


def _text(value: object) -> str:
    return "-" if value is None else escape(str(value))
