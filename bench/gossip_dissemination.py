"""All-to-all blob dissemination between node processes: the bulk channel beside the stock path.

Starts NODES OS processes on 127.0.0.1 (each with real libp2p hosts, GossipSub, signed
announcements and a blob store); every round each makes a random blob of SIZE_MIB MiB,
announces it and fetches every other node's blob on its announcement. Prints the median
seconds and CPU seconds per round after the first over the bulk channel, beside the same
over libp2p Yamux streams (network.bulk_channel = false) measured in the same run, rounds
interleaved. The same as ``medswarm bench gossip``.

    python bench/gossip_dissemination.py [--nodes 8] [--size-mib 4] [--rounds 6] [--json]
"""

from __future__ import annotations

import sys

from medswarm.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "gossip", *sys.argv[1:]]))
