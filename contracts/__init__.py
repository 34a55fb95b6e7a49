"""Solidity sources of the federation's contracts and their committed compiled artifacts.

``load_artifact(name)`` reads ``contracts/artifacts/<name>.json``; no compiler is needed at run
time. Regenerate artifacts with ``python -m contracts.compile``.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from incentive.errors import ArtifactError, ArtifactMissing

ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: its ABI and creation bytecode (0x-prefixed hex)."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    source_hash: str


@functools.cache
def load_artifact(name: str) -> Artifact:
    """Read the committed artifact of contract ``name`` (e.g. ``"Ledger"``)."""
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactMissing(
            f"no compiled artifact {path}; run `python -m contracts.compile`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(
            f"cannot read {path} ({exc}); regenerate it with `python -m contracts.compile`"
        ) from exc
    try:
        return Artifact(
            name=data["contractName"],
            abi=data["abi"],
            bytecode=data["bytecode"],
            source_hash=data["sourceHash"],
        )
    except (KeyError, TypeError) as exc:
        raise ArtifactError(
            f"{path} lacks {exc}; regenerate it with `python -m contracts.compile`"
        ) from exc
