"""A node process's peak memory is its own, not its launcher's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CHILD = (
    "import resource; from node.process import _peak_rss_mb; "
    "print(_peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
)


def test_peak_rss_does_not_count_the_launchers_memory() -> None:
    held = bytearray(1536 * 2**20)  # the launcher holds 1.5 GB when it starts the node
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, cwd=REPO, check=True
    )
    del held
    peak, inherited = (float(field) for field in result.stdout.split())
    assert inherited > 1536  # what ru_maxrss says: the launcher's memory at the fork
    assert 0 < peak < 1024  # the child's own high-water mark
