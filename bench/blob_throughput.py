"""Blob throughput between two node processes: raw TCP, the libp2p Yamux stream, the bulk channel.

Starts two OS processes on 127.0.0.1 (each a GossipService), moves a random blob between them
over each path REPEAT times, interleaved, and prints the median MB/s of each path and its
ratio to the raw TCP transfer measured in the same run. The same as ``medswarm bench blob``.

    python bench/blob_throughput.py [--size-mib 64] [--repeat 5] [--json]
"""

from __future__ import annotations

import sys

from medswarm.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "blob", *sys.argv[1:]]))
