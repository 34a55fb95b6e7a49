"""What a node must remember across a crash: the last round it finished and that model's hash.

The model bytes themselves live in the node's blob store under their hash, so a checkpoint is
one small JSON file, replaced atomically after every finalized round. A site that keeps local
layers (``strategy.local_layers``) also keeps them here, in ``local-layers.mswt`` (the weight
encoding), never in the blob store that serves peers; the checkpoint names their hash.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from node.errors import InvalidWeights, NodeError
from node.weights import Weights, decode_weights, encode_weights, weights_hash


@dataclass(frozen=True)
class Checkpoint:
    """The last round this node saw finalized, and the global model hash it ended with."""

    round: int
    global_hash: str
    local_hash: str | None = None  # the site's local layers saved with this round, if any


class Journal:
    """``<state_dir>/checkpoint.json``, written atomically."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "checkpoint.json"
        self.local_path = state_dir / "local-layers.mswt"
        state_dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> Checkpoint | None:
        """The saved checkpoint, or None if this node never finished a round."""
        if not self.path.exists():
            return None
        try:
            raw = json.loads(self.path.read_text())
            local = raw.get("local_hash")
            return Checkpoint(
                round=int(raw["round"]),
                global_hash=str(raw["global_hash"]),
                local_hash=None if local is None else str(local),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise NodeError(
                f"checkpoint {self.path} is unreadable ({exc}); delete it to resync the "
                "current model from peers"
            ) from exc

    def save(self, checkpoint: Checkpoint) -> None:
        self._replace(self.path, json.dumps(asdict(checkpoint)).encode())

    def save_local(self, weights: Weights) -> str:
        """Write the site's local layers (atomically); their hash, for the next checkpoint."""
        data = encode_weights(weights)
        self._replace(self.local_path, data)
        return weights_hash(weights)

    def load_local(self, expected_hash: str) -> Weights:
        """The local layers saved under ``expected_hash``; a clear error if they are not."""
        problem = f"local layers {self.local_path} are missing"
        if self.local_path.exists():
            data = self.local_path.read_bytes()
            try:
                weights = decode_weights(data, max_bytes=len(data))
            except InvalidWeights as exc:
                problem = f"local layers {self.local_path} are unreadable ({exc})"
            else:
                if weights_hash(weights) == expected_hash:
                    return weights
                problem = f"local layers {self.local_path} do not match the checkpoint"
        raise NodeError(
            f"{problem}; delete {self.path} to start this site's local layers over "
            "(the node then resyncs the global model from peers)"
        )

    def _replace(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
