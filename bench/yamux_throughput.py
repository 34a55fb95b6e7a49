"""Blob throughput over one Yamux stream between two processes, reader-safe against stock Yamux.

For each round and each muxer (py-libp2p's stock ``Yamux``, then ``gossip.muxer``'s
``ReaderSafeYamux``), starts a provider process holding one blob, connects to it from this
process and fetches the blob ``--fetches`` times over ``/medswarm/blob/1.0.0`` (both ends use
the same muxer). Prints MB/s (10^6 bytes per second) per muxer, median and best, and the
fetching process's CPU seconds per fetch (less sensitive to load from other programs).

    python bench/yamux_throughput.py [--mib 64] [--rounds 3] [--fetches 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio
from libp2p import create_yamux_muxer_option

import gossip.service
from gossip.blobs import BlobStore, blob_hash
from gossip.service import GossipConfig, GossipService
from gossip.validation import AnnouncementPolicy

MUXERS = ("stock", "reader-safe")
READER_SAFE = (gossip.service.muxer_options, gossip.service.honour_muxer_options)


def use_muxer(muxer: str) -> None:
    """Make the next GossipService build stock py-libp2p Yamux or ReaderSafeYamux."""
    if muxer == "stock":
        gossip.service.muxer_options = create_yamux_muxer_option
        gossip.service.honour_muxer_options = lambda host: None
    else:
        gossip.service.muxer_options, gossip.service.honour_muxer_options = READER_SAFE


def new_service(max_blob_bytes: int) -> GossipService:
    policy = AnnouncementPolicy.without_registry("bench", max_blob_bytes)
    config = GossipConfig(max_blob_bytes=max_blob_bytes, fetch_timeout=300)
    return GossipService(config, policy, BlobStore(max_blob_bytes=max_blob_bytes))


async def serve(size: int) -> None:
    """Provider: print address and blob hash, serve until stdin closes."""
    provider = new_service(size)
    digest = provider.store.put(random.Random(size).randbytes(size))
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)
        print(provider.listen_addrs[0], digest, flush=True)
        await trio.to_thread.run_sync(sys.stdin.read)
        nursery.cancel_scope.cancel()


async def fetch(address: str, digest: str, size: int, fetches: int) -> list[tuple[float, float]]:
    """Fetcher: wall and CPU seconds (this process) per fetch of ``digest`` from ``address``."""
    fetcher = new_service(size)
    seconds = []
    async with trio.open_nursery() as nursery:
        await nursery.start(fetcher.run)
        provider = await fetcher.connect(address)
        for _ in range(fetches):
            fetcher.store = BlobStore(max_blob_bytes=size)  # fetch over the wire every time
            started, cpu = trio.current_time(), time.process_time()
            with trio.fail_after(300):
                data = await fetcher.fetch(digest, [provider])
            seconds.append((trio.current_time() - started, time.process_time() - cpu))
            if blob_hash(data) != digest:
                raise SystemExit("fetched bytes do not match the blob hash")
        nursery.cancel_scope.cancel()
    return seconds


def measure(muxer: str, size: int, fetches: int) -> list[tuple[float, float]]:
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", muxer, f"--bytes={size}"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as p:
        assert p.stdin is not None and p.stdout is not None
        try:
            address, digest = p.stdout.readline().split()
            return trio.run(fetch, address, digest, size, fetches)
        finally:
            p.stdin.close()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fetches", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", choices=MUXERS, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        use_muxer(args.serve)
        trio.run(serve, args.bytes)
        return 0

    size = args.mib * 2**20
    rates: dict[str, list[float]] = {muxer: [] for muxer in MUXERS}
    cpu: dict[str, list[float]] = {muxer: [] for muxer in MUXERS}
    for _ in range(args.rounds):  # interleaved, so load from elsewhere hits both alike
        for muxer in MUXERS:
            use_muxer(muxer)
            for wall, used in measure(muxer, size, args.fetches):
                rates[muxer].append(size / wall / 1e6)
                cpu[muxer].append(used)
    result = {
        muxer: {
            "median_mb_s": statistics.median(rates[muxer]),
            "best_mb_s": max(rates[muxer]),
            "median_fetcher_cpu_s": statistics.median(cpu[muxer]),
            "mb_s": rates[muxer],
        }
        for muxer in MUXERS
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for muxer, r in result.items():
            label = "(baseline)" if muxer == "stock" else ""
            print(
                f"{muxer:12} {args.mib} MiB: median {r['median_mb_s']:.1f} MB/s, "
                f"best {r['best_mb_s']:.1f} MB/s, fetcher CPU {r['median_fetcher_cpu_s']:.2f} s "
                f"per fetch, {len(rates[muxer])} fetches {label}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
