"""The node's checkpoint and its local layers on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from node.errors import NodeError
from node.journal import Checkpoint, Journal
from node.weights import weights_hash

BIAS = {"linear.bias": np.array([0.25], dtype=np.float32)}


def test_checkpoint_with_local_layers_round_trips(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.load() is None
    local_hash = journal.save_local(BIAS)
    assert local_hash == weights_hash(BIAS)
    journal.save(Checkpoint(3, "ab" * 32, local_hash))
    again = Journal(tmp_path)
    assert again.load() == Checkpoint(3, "ab" * 32, local_hash)
    assert again.load_local(local_hash)["linear.bias"].tolist() == [0.25]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "local-layers.mswt"]


def test_a_checkpoint_from_before_local_layers_still_loads(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.json").write_text('{"round": 2, "global_hash": "cd"}')
    assert Journal(tmp_path).load() == Checkpoint(2, "cd", None)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.unlink(), "are missing"),
        (lambda path: path.write_bytes(b"MSWT garbage"), "are unreadable"),
        (lambda path: path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0"), "do not match"),
    ],
)
def test_damaged_local_layers_say_how_to_recover(
    tmp_path: Path, damage: Callable[[Path], object], message: str
) -> None:
    journal = Journal(tmp_path)
    local_hash = journal.save_local(BIAS)
    damage(journal.local_path)
    with pytest.raises(NodeError, match=f"{message}.*delete .*checkpoint.json"):
        journal.load_local(local_hash)
