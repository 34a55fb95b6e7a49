"""The chain record a run keeps in its run directory, for audits after the chain is gone.

Layout (paths relative to the run directory)::

    chain/deployment.json   Deployment.to_json(): chain id, contract addresses, deploy blocks
    chain/events.jsonl      EventLog.write_jsonl(): every federation event, one JSON per line,
                            in chain order (see incentive.events for the record format)

The node writes both with :func:`write_chain_record` (at the end of a run, and after each round
if it wants a crash to leave a usable record); ``medswarm audit --run-dir RUN`` reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

from incentive.deployment import Deployment
from incentive.errors import AuditError
from incentive.events import EventLog, EventRecord

CHAIN_DIR = "chain"
DEPLOYMENT_FILE = f"{CHAIN_DIR}/deployment.json"
EVENTS_FILE = f"{CHAIN_DIR}/events.jsonl"


def write_chain_record(
    run_dir: str | os.PathLike[str], deployment: Deployment, event_log: EventLog
) -> tuple[Path, Path]:
    """Write ``chain/deployment.json`` and ``chain/events.jsonl`` under ``run_dir``."""
    root = Path(run_dir)
    (root / CHAIN_DIR).mkdir(parents=True, exist_ok=True)
    deployment_path = root / DEPLOYMENT_FILE
    tmp = deployment_path.with_name(deployment_path.name + ".tmp")
    tmp.write_text(deployment.to_json(), encoding="utf-8")
    tmp.replace(deployment_path)
    return deployment_path, event_log.write_jsonl(root / EVENTS_FILE)


def read_chain_record(run_dir: str | os.PathLike[str]) -> tuple[Deployment, list[EventRecord]]:
    """Read a run's chain record; raise AuditError saying what is missing or garbled."""
    root = Path(run_dir)
    if not root.is_dir():
        raise AuditError(f"run directory {root} does not exist; pass the directory of a run")
    deployment_path = root / DEPLOYMENT_FILE
    events_path = root / EVENTS_FILE
    for path in (deployment_path, events_path):
        if not path.is_file():
            raise AuditError(
                f"{path} is missing: {root} is not a run directory with a chain record "
                f"(expected {DEPLOYMENT_FILE} and {EVENTS_FILE})"
            )
    try:
        deployment = Deployment.from_json(deployment_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AuditError(f"cannot read {deployment_path}: {exc}") from exc
    try:
        events = EventLog.read_jsonl(events_path).records()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise AuditError(f"cannot read {events_path}: {exc}") from exc
    return deployment, events
