"""What a node must remember across a crash: the last round it finished and that model's hash.

The model bytes themselves live in the node's blob store under their hash, so a checkpoint is
one small JSON file, replaced atomically after every finalized round.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from node.errors import NodeError


@dataclass(frozen=True)
class Checkpoint:
    """The last round this node saw finalized, and the global model hash it ended with."""

    round: int
    global_hash: str


class Journal:
    """``<state_dir>/checkpoint.json``, written atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "checkpoint.json"
        state_dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> Checkpoint | None:
        """The saved checkpoint, or None if this node never finished a round."""
        if not self.path.exists():
            return None
        try:
            raw = json.loads(self.path.read_text())
            return Checkpoint(round=int(raw["round"]), global_hash=str(raw["global_hash"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeError(
                f"checkpoint {self.path} is unreadable ({exc}); delete it to resync the "
                "current model from peers"
            ) from exc

    def save(self, checkpoint: Checkpoint) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".checkpoint-")
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(checkpoint), handle)
        os.replace(tmp, self.path)
