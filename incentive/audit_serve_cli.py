"""``medswarm audit serve``: the auditors' read-only web dashboard (incentive/audit_server.py).

    medswarm audit serve --run-dir RUN                         the run's recorded chain events
    medswarm audit serve --rpc URL --address ADDR [--rewards ADDR]    a live Consortium
    medswarm audit serve --rpc URL --registry ADDR                    a live Registry/Ledger
    medswarm audit serve --rpc URL --deployment-file FILE             addresses from a record
    medswarm audit serve --rpc URL --run-dir RUN                      the run's addresses, live

Options: ``--bind HOST:PORT`` (127.0.0.1:9465), ``--refresh SECONDS`` (30; 0 reads once),
``--rpc-timeout SECONDS`` (10), ``--duration SECONDS`` (stop after; default: until Ctrl-C).
Exit 0 when stopped, 2 when the audit cannot be read or the address cannot be listened on.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from incentive.audit import build_audit, source_from_chain, source_from_run_dir
from incentive.audit_server import DEFAULT_BIND, DEFAULT_REFRESH_SECONDS, AuditServer
from incentive.audit_view import AuditView, view_of_consortium, view_of_ledger
from incentive.chain import connect_rpc
from incentive.consortium_audit import audit_events, read_and_audit, read_events
from incentive.deployment import ConsortiumDeployment, Deployment, is_consortium_record
from incentive.errors import AuditError, ChainError
from incentive.events import EventLog
from incentive.rundir import DEPLOYMENT_FILE, EVENTS_FILE
from medswarm.errors import MedswarmError
from medswarm.http_responder import split_host_port


def add_serve_parser(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Register ``audit serve`` on the ``audit`` sub-parsers."""
    serve = actions.add_parser(
        "serve",
        help="serve a read-only web dashboard of the audit",
        description=(
            "Audit a run directory or a live chain and serve the result as read-only web "
            "pages: rounds and their global hashes, each model's lineage (rounds, cluster "
            "aggregates, updates, hospitals), contributions, reputation and rewards over time. "
            "No authentication: keep it on 127.0.0.1."
        ),
    )
    serve.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        metavar="RUN",
        help="run directory: its chain/ record (or, with --rpc, its addresses)",
    )
    serve.add_argument("--rpc", default=None, metavar="URL", help="JSON-RPC URL of a live chain")
    serve.add_argument("--address", default=None, help="the Consortium contract (with --rpc)")
    serve.add_argument("--rewards", default=None, help="its EpochRewards pool (with --address)")
    serve.add_argument("--registry", default=None, help="the Registry contract (with --rpc)")
    serve.add_argument(
        "--deployment-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="deployment record naming the contracts (with --rpc)",
    )
    serve.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="HOST:PORT",
        help=f"address to serve on ({DEFAULT_BIND}; port 0 takes a free one)",
    )
    serve.add_argument(
        "--refresh",
        type=float,
        default=DEFAULT_REFRESH_SECONDS,
        metavar="SECONDS",
        help="re-read the audit this often (30; 0: once)",
    )
    serve.add_argument(
        "--rpc-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds per RPC request (10)",
    )
    serve.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop serving after this many seconds (default: until Ctrl-C)",
    )
    serve.set_defaults(handler=run_serve)
    return serve


def run_serve(args: argparse.Namespace) -> int:
    """Handler of ``medswarm audit serve``."""
    try:
        host, port = split_host_port(args.bind)
    except ValueError as exc:
        raise AuditError(f'--bind {args.bind!r}: {exc}, e.g. "127.0.0.1:9465"') from None
    for name in ("refresh", "rpc_timeout", "duration"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise AuditError(f"--{name.replace('_', '-')} must be a number of seconds >= 0")
    server = AuditServer(audit_loader(args), host, port, args.refresh)

    async def serve() -> None:
        with trio.move_on_after(math.inf if args.duration is None else args.duration):
            async with trio.open_nursery() as nursery:
                url = await nursery.start(server.serve)
                view = server.view
                assert view is not None
                verdict = "every check passed" if view.ok else f"{len(view.problems)} problem(s)"
                print(
                    f"audit dashboard on {url} ({len(view.rounds)} rounds, {verdict}) from "
                    f"{view.source}; Ctrl-C stops it",
                    flush=True,
                )

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a server is stopped
        trio.run(serve)
    return 0


def audit_loader(args: argparse.Namespace) -> Callable[[], AuditView]:
    """A function building the audit the options name (it raises MedswarmError)."""
    run_dir: Path | None = args.run_dir
    if args.rpc is None:
        if run_dir is None:
            raise AuditError(
                "give --run-dir RUN, or --rpc URL with --address, --registry, "
                "--deployment-file or --run-dir"
            )
        if any(x is not None for x in (args.address, args.registry, args.deployment_file)):
            raise AuditError("--address, --registry and --deployment-file need --rpc URL")
        return lambda: _run_dir_view(run_dir)
    record_file = args.deployment_file or (run_dir / DEPLOYMENT_FILE if run_dir else None)
    named = [x for x in (args.address, args.registry, record_file) if x is not None]
    if len(named) != 1:
        raise AuditError(
            "with --rpc give one of --address (Consortium), --registry (Registry/Ledger), "
            "--deployment-file or --run-dir"
        )
    if record_file is not None:
        return _record_loader(args.rpc, record_file, args.rpc_timeout)
    w3 = connect_rpc(args.rpc, timeout=args.rpc_timeout)
    if args.address is not None:
        return lambda: _chain_consortium_view(w3, args.rpc, args.address, args.rewards)
    return lambda: _chain_ledger_view(w3, args.rpc, args.registry)


def _run_dir_view(run_dir: Path) -> AuditView:
    record = run_dir / DEPLOYMENT_FILE
    if record.is_file() and is_consortium_record(record.read_text(encoding="utf-8")):
        deployment = ConsortiumDeployment.from_json(record.read_text(encoding="utf-8"))
        events_file = run_dir / EVENTS_FILE
        if not events_file.is_file():
            raise AuditError(f"{events_file} is missing: the run left no chain events to audit")
        try:
            events = EventLog.read_jsonl(events_file).records()
        except (OSError, ValueError, KeyError) as exc:
            raise AuditError(f"cannot read {events_file}: {exc}") from exc
        return view_of_consortium(
            audit_events(events),
            f"run directory {run_dir}",
            deployment.chain_id,
            {"Consortium": deployment.consortium, "EpochRewards": deployment.rewards},
        )
    return view_of_ledger(build_audit(source_from_run_dir(run_dir)))


def _record_loader(url: str, record_file: Path, timeout: float) -> Callable[[], AuditView]:
    try:
        text = record_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditError(f"cannot read the deployment record {record_file}: {exc}") from exc
    if is_consortium_record(text):
        record = ConsortiumDeployment.from_json(text)
        w3 = connect_rpc(url, chain_id=record.chain_id, timeout=timeout)
        return lambda: _chain_consortium_view(w3, url, record.consortium, record.rewards)
    try:
        deployment = Deployment.from_json(text)
    except ValueError as exc:
        raise AuditError(f"{record_file} is not a deployment record: {exc}") from exc
    w3 = connect_rpc(url, chain_id=deployment.chain_id, timeout=timeout)
    return lambda: _chain_ledger_view(w3, url, deployment.registry)


def _chain_consortium_view(w3: Any, url: str, address: str, rewards: str | None) -> AuditView:
    try:
        chain_id = int(w3.eth.chain_id)
        if not w3.eth.get_code(address):
            raise AuditError(
                f"no contract at {address} on chain {chain_id} ({url}); check --address and "
                "the RPC URL"
            )
        events = read_events(w3, address, rewards)
        audit = read_and_audit(w3, address, rewards, events)
    except MedswarmError:
        raise
    except Exception as exc:  # transport or decoding errors while reading the chain
        raise ChainError(f"reading the consortium at {address} from {url} failed: {exc}") from exc
    contracts = {"Consortium": address, **({"EpochRewards": rewards} if rewards else {})}
    return view_of_consortium(audit, f"chain at {url}", chain_id, contracts)


def _chain_ledger_view(w3: Any, url: str, registry: str) -> AuditView:
    try:
        source = source_from_chain(w3, registry, description=f"chain at {url}")
    except MedswarmError:
        raise
    except ValueError as exc:
        raise AuditError(str(exc)) from exc
    except Exception as exc:  # transport errors from web3/requests while reading
        raise ChainError(f"reading the federation from {url} failed: {exc}") from exc
    return view_of_ledger(build_audit(source))
