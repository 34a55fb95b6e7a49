"""The ``medswarm audit`` sub-command.

    medswarm audit --run-dir RUN [--json]
    medswarm audit --rpc URL --registry ADDR [--json]
    medswarm audit verify MODEL (--run-dir RUN | --rpc URL --registry ADDR) [--json]
    medswarm audit consortium (--rpc URL --address ADDR [--rewards ADDR] | --events FILE |
                               --run-dir RUN) [--model HASH|FILE] [--out DIR] [--json]
    medswarm audit serve (--run-dir RUN | --rpc URL ...) [--bind HOST:PORT]   (a web dashboard,
                               incentive/audit_serve_cli.py)

A run directory whose rounds the Consortium kept (``federation.ledger = "consortium"``) is
audited the Consortium's way by ``audit --run-dir`` and ``audit verify --run-dir`` too.

Exit codes: ``audit`` 0 when every check passed, 1 when it found problems; ``verify`` 0 when the
model is the final global model of a round, 1 when it is not; 2 for unusable input (missing or
garbled run directory, unreachable chain), reported by the top-level CLI as ``error: ...``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from incentive.audit import (
    AuditSource,
    build_audit,
    file_sha256,
    source_from_chain,
    source_from_run_dir,
    verify_model,
)
from incentive.audit_report import RoundEntry, render_text
from incentive.audit_serve_cli import add_serve_parser
from incentive.chain import connect_rpc
from incentive.consortium_audit import (
    AuditedRound,
    ConsortiumAudit,
    audit_events,
    read_and_audit,
    read_events,
)
from incentive.consortium_report import write_exports
from incentive.deployment import is_consortium_record
from incentive.errors import AuditError, ChainError
from incentive.events import EventLog, EventRecord
from medswarm.errors import MedswarmError


def add_audit_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``audit`` (and ``audit verify``) on a parser's sub-parsers."""
    audit = subparsers.add_parser(
        "audit",
        help="trace models to rounds, hospitals, scores and rewards; check the arithmetic",
        description=(
            "Report every round (final global hash, attestations, and per cluster the "
            "aggregate, its aggregator and each hospital's update hash, samples and score), "
            "members' contributions and rewards, and check them. Exit 0 when all "
            "checks pass, 1 when problems are found, 2 on unusable input."
        ),
    )
    _add_source_options(audit, None)
    audit.add_argument("--json", action="store_true", help="print machine-readable JSON")
    audit.set_defaults(handler=run_audit)
    actions = audit.add_subparsers(dest="audit_action", metavar="{verify,consortium,serve}")
    verify = actions.add_parser(
        "verify",
        help="find the round that produced a model file",
        description=(
            "Print the round whose final global hash is the SHA-256 of MODEL (exit 0), or "
            "say that no round finalized it (exit 1)."
        ),
    )
    verify.add_argument("model", type=Path, help="model file to look up")
    _add_source_options(verify, argparse.SUPPRESS)
    verify.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    verify.set_defaults(handler=run_verify)
    consortium = actions.add_parser(
        "consortium",
        help="audit a Consortium contract (and its EpochRewards pool) from its events",
        description=(
            "Replay every round and epoch of a Consortium from the chain's events: recompute "
            "each cluster's Merkle root, each round's commitments and hash chain, every "
            "contribution, reputation and payout, and compare them with the contracts. Exit 0 "
            "when every check passes, 1 when problems are found."
        ),
    )
    consortium.add_argument("--rpc", default=None, metavar="URL", help="JSON-RPC URL")
    consortium.add_argument("--address", default=None, help="the Consortium contract")
    consortium.add_argument(
        "--events",
        type=Path,
        default=None,
        metavar="FILE",
        help="audit an events.jsonl written by an earlier --out instead of a live chain "
        "(every check but the comparison with the contracts' current views)",
    )
    consortium.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        metavar="RUN",
        help="audit a testnet run directory's chain/events.jsonl (like --events)",
    )
    consortium.add_argument("--rewards", default=None, help="its EpochRewards pool, if any")
    consortium.add_argument(
        "--model",
        default=None,
        metavar="HASH|FILE",
        help="print the lineage of this global hash, or of this model file (hashed)",
    )
    consortium.add_argument(
        "--out", type=Path, default=None, help="write audit.json, CSV files and report.html here"
    )
    consortium.add_argument("--json", action="store_true", help="print machine-readable JSON")
    consortium.set_defaults(handler=run_consortium_audit)
    add_serve_parser(actions)
    return audit


def _add_source_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--run-dir",
        type=Path,
        default=default,
        metavar="RUN",
        help="run directory holding chain/ records",
    )
    parser.add_argument(
        "--rpc", default=default, metavar="URL", help="JSON-RPC URL of a live chain"
    )
    parser.add_argument(
        "--registry", default=default, metavar="ADDRESS", help="Registry address on that chain"
    )
    parser.add_argument(
        "--rpc-timeout",
        type=float,
        default=default,
        metavar="SECONDS",
        help="seconds per RPC request (10)",
    )


def load_source(args: argparse.Namespace) -> AuditSource:
    """The audit source named by ``--run-dir`` or ``--rpc``/``--registry``."""
    run_dir: Path | None = getattr(args, "run_dir", None)
    rpc: str | None = getattr(args, "rpc", None)
    registry: str | None = getattr(args, "registry", None)
    if run_dir is not None and rpc is not None:
        raise AuditError("give either --run-dir or --rpc, not both")
    if run_dir is not None:
        return source_from_run_dir(run_dir)
    if rpc is None:
        raise AuditError("give either --run-dir RUN or --rpc URL --registry ADDRESS")
    if registry is None:
        raise AuditError("--rpc needs --registry ADDRESS (the federation's Registry contract)")
    timeout = getattr(args, "rpc_timeout", None) or 10.0
    w3 = connect_rpc(rpc, timeout=timeout)
    try:
        return source_from_chain(w3, registry, description=f"chain at {rpc}")
    except MedswarmError:
        raise
    except ValueError as exc:
        raise AuditError(str(exc)) from exc
    except Exception as exc:  # transport errors from web3/requests while reading
        raise ChainError(f"reading the federation from {rpc} failed: {exc}") from exc


def consortium_events(run_dir: Path | None) -> Path | None:
    """The events file of a run directory whose rounds the Consortium kept, else None."""
    if run_dir is None:
        return None
    record = run_dir / "chain" / "deployment.json"
    try:
        text = record.read_text()
    except OSError:
        return None  # source_from_run_dir reports what is missing
    return run_dir / "chain" / "events.jsonl" if is_consortium_record(text) else None


def run_audit(args: argparse.Namespace) -> int:
    """Handler of ``medswarm audit``."""
    events = consortium_events(getattr(args, "run_dir", None))
    if events is not None:
        return _audit_consortium_file(events, None, None, args.json)
    report = build_audit(load_source(args))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        sys.stdout.write(render_text(report))
    return 0 if report.ok else 1


def run_verify(args: argparse.Namespace) -> int:
    """Handler of ``medswarm audit verify MODEL``."""
    model: Path = args.model
    if not model.is_file():
        raise AuditError(f"model file {model} does not exist")
    events = consortium_events(getattr(args, "run_dir", None))
    if events is not None:
        audit = audit_events(_read_events_file(events))
        lineage = audit.lineage(file_sha256(model))
        if getattr(args, "json", False):
            print(json.dumps({"model": str(model), "lineage": lineage}))
        elif lineage is None:
            print(f"{model} (sha256 {file_sha256(model)}) is not the final model of any round")
        else:
            print(
                f"{model} is the final global model of round {lineage['round']} "
                f"(sha256 {lineage['global_hash']}); transaction {lineage['transaction']}"
            )
        return 0 if lineage is not None else 1
    report = build_audit(load_source(args))
    found = verify_model(model, report)
    digest = file_sha256(model)
    if getattr(args, "json", False):
        print(json.dumps(_verify_json(model, digest, found)))
    elif found is None:
        print(f"{model} (sha256 {digest}) is not the final model of any round")
    else:
        aggregators = "; ".join(
            f"cluster {c.cluster}: {c.aggregator_name} ({c.aggregator}), candidate rank "
            f"{c.candidate_rank}"
            for c in found.clusters
        )
        print(
            f"{model} is the final global model of round {found.round} (sha256 {digest}); "
            f"final in block {found.finalized_block} with {found.attestations} "
            f"attestation(s); aggregated by {aggregators}"
        )
    return 0 if found is not None else 1


def _verify_json(model: Path, digest: str, found: RoundEntry | None) -> dict[str, Any]:
    return {
        "model": str(model),
        "sha256": digest,
        "round": None if found is None else found.round,
        "finalized": None if found is None else found.finalized,
        "finalized_block": None if found is None else found.finalized_block,
        "attestations": None if found is None else found.attestations,
        "clusters": []
        if found is None
        else [
            {
                "cluster": c.cluster,
                "aggregate_hash": c.aggregate_hash,
                "aggregator": c.aggregator,
                "aggregator_name": c.aggregator_name,
                "candidate_rank": c.candidate_rank,
            }
            for c in found.clusters
        ],
    }


def run_consortium_audit(args: argparse.Namespace) -> int:
    """Handler of ``medswarm audit consortium``."""
    sources = [x for x in (args.events, args.rpc, args.run_dir) if x is not None]
    if len(sources) != 1:
        raise AuditError("give one of --rpc URL --address ADDRESS, --events FILE or --run-dir RUN")
    if args.run_dir is not None:
        events_file = consortium_events(args.run_dir)
        if events_file is None:
            raise AuditError(
                f"{args.run_dir} is not the run directory of a federation kept by the "
                "Consortium (no chain/deployment.json of that kind); use medswarm audit "
                "--run-dir for Ledger runs"
            )
        return _audit_consortium_file(events_file, _model_hash(args.model), args.out, args.json)
    if args.events is not None:
        return _audit_consortium_file(args.events, _model_hash(args.model), args.out, args.json)
    if args.address is None:
        raise AuditError("--rpc needs --address ADDRESS (the Consortium contract)")
    w3 = connect_rpc(args.rpc)
    try:
        events = read_events(w3, args.address, args.rewards)
        audit = read_and_audit(w3, args.address, args.rewards, events)
    except MedswarmError:
        raise
    except Exception as exc:  # transport or decoding errors while reading the chain
        raise ChainError(f"reading the consortium at {args.address} failed: {exc}") from exc
    return _report_consortium(audit, events, _model_hash(args.model), args.out, args.json)


def _model_hash(model: str | None) -> str | None:
    """``--model``: a global hash as given, or the SHA-256 of the model file it names."""
    if model is None:
        return None
    path = Path(model)
    return file_sha256(path) if path.is_file() else model


def _read_events_file(path: Path) -> list[EventRecord]:
    if not path.is_file():
        raise AuditError(f"events file {path} does not exist")
    try:
        return EventLog.read_jsonl(path).records()
    except (OSError, ValueError, KeyError) as exc:
        raise AuditError(f"{path} is not an events file of an audit: {exc}") from exc


def _privacy_text(audited: AuditedRound) -> str:
    """A round's recorded privacy budget, as the audit prints it."""
    if audited.epsilon_e6 is None:
        return "privacy budget not recorded"
    if audited.epsilon is None:
        return "no differential-privacy guarantee"
    return f"epsilon {audited.epsilon:.6f} at delta {audited.delta:g}"


def _audit_consortium_file(path: Path, model: str | None, out: Path | None, as_json: bool) -> int:
    events = _read_events_file(path)
    return _report_consortium(audit_events(events), events, model, out, as_json)


def _report_consortium(
    audit: ConsortiumAudit,
    events: list[EventRecord],
    model: str | None,
    out: Path | None,
    as_json: bool,
) -> int:
    lineage = audit.lineage(model) if model else None
    if out is not None:
        write_exports(audit, out)
        EventLog(events).write_jsonl(out / "events.jsonl")
    if as_json:
        print(json.dumps({**audit.as_dict(), "lineage": lineage}, indent=2))
    else:
        verdict = "every check passed" if audit.ok else f"{len(audit.problems)} problem(s)"
        print(f"{len(audit.rounds)} rounds, {len(audit.epochs)} epochs: {verdict}")
        for problem in audit.problems:
            print(f"  - {problem}")
        for m in audit.members.values():
            print(
                f"  {m.index:>3} {m.name:<20} contribution {m.contribution:>12} "
                f"reputation {m.reputation:>5} credited {m.credited}"
            )
        for r in audit.rounds:
            print(f"  round {r.round:>4} {r.global_hash[:16]} {_privacy_text(r)}")
        if model:
            print(json.dumps(lineage, indent=2) if lineage else f"no round made {model}")
        if out is not None:
            print(f"wrote {out}/report.html, audit.json, events.jsonl and CSV files")
    if model and lineage is None:
        return 1
    return 0 if audit.ok else 1
