"""One node process for the multi-provider fetch test: a real GossipService on 127.0.0.1.

    python -m tests.integration.fetch_node provider --blob FILE --store DIR [--freeze]
    python -m tests.integration.fetch_node fetcher --store DIR --digest HASH --providers JSON
    python -m tests.integration.fetch_node obtainer --store DIR --digest HASH --providers JSON

Each prints JSON lines on stdout. A provider stores the blob, prints
``{"address", "peer_id", "digest"}`` once listening, and runs until its stdin closes. With
``--freeze``, when it is asked for a second non-empty range it prints ``{"frozen": offset}``
and stops answering anything for ``FREEZE_SECONDS`` (its event loop blocked), so that a test
can kill or stop it while that range is certainly outstanding. A fetcher dials every
provider, fetches the blob from all of them within the fetch budget (``fetch_timeout`` per
provider, what fetching whole from one after the other may take), prints ``{"digest",
"seconds", "offences", "bulk_received"}`` (or ``{"error"}``) and runs until its stdin closes.
An obtainer waits for a line on stdin, then makes two concurrent ``obtain`` calls for the blob
(as a node's prefetch and its aggregator duty do), one a moment after the other: the first
asks the first provider, the second all of them. It prints ``{"errors": [...], "seconds"}``:
what each raised (null if it succeeded) and how long both took.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import trio

from gossip.blobs import BlobStore, blob_hash
from gossip.service import GossipConfig, GossipService
from gossip.validation import AnnouncementPolicy

CONFIG = GossipConfig(listen_host="127.0.0.1", fetch_timeout=10.0, max_blob_bytes=64 * 2**20)
FREEZE_SECONDS = 10.0


def _service(store_dir: Path) -> GossipService:
    policy = AnnouncementPolicy.without_registry("multiprov", CONFIG.max_blob_bytes)
    return GossipService(CONFIG, policy, BlobStore(store_dir, CONFIG.max_blob_bytes))


def _say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


async def _until_stdin_closes() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    while await stdin.receive_some():
        pass


async def provider(blob_file: Path, store_dir: Path, freeze: bool) -> None:
    service = _service(store_dir)
    digest = service.store.put(blob_file.read_bytes())
    if freeze:
        read_range = service.serve_range
        asked = 0

        def freezing(wanted: str, offset: int, count: int) -> tuple[int, bytes] | None:
            nonlocal asked
            asked += count > 0
            if asked == 2:
                _say({"frozen": offset})
                time.sleep(FREEZE_SECONDS)  # blocks the whole node, as a stuck process would
            return read_range(wanted, offset, count)

        service.serve_range = freezing
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        _say({"address": service.listen_addrs[0], "peer_id": service.peer_id, "digest": digest})
        await _until_stdin_closes()
        nursery.cancel_scope.cancel()


async def fetcher(store_dir: Path, digest: str, providers: list[dict[str, str]]) -> None:
    service = _service(store_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        for peer in providers:
            await service.connect(peer["address"])
        budget = CONFIG.fetch_timeout * len(providers)
        started = time.perf_counter()
        try:
            with trio.fail_after(budget):
                data = await service.fetch(digest, [peer["peer_id"] for peer in providers])
        except Exception as exc:
            _say({"error": f"{exc!r}"})
        else:
            _say(
                {
                    "digest": blob_hash(data),
                    "seconds": time.perf_counter() - started,
                    "offences": dict(service.offences),
                    "bulk_received": service.traffic["bulk_received"],
                }
            )
        await _until_stdin_closes()
        nursery.cancel_scope.cancel()


async def obtainer(store_dir: Path, digest: str, providers: list[dict[str, str]]) -> None:
    service = _service(store_dir)
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        for peer in providers:
            await service.connect(peer["address"])
        _say({"connected": len(providers)})
        await stdin.receive_some()  # the test has done to the providers what it wanted
        errors: list[str | None] = [None, None]

        async def obtain(index: int) -> None:
            asked = providers[:1] if index == 0 else providers
            try:
                await service.obtain(digest, [peer["peer_id"] for peer in asked])
            except Exception as exc:
                errors[index] = str(exc)

        started = time.perf_counter()
        with trio.fail_after(4 * CONFIG.fetch_timeout):
            async with trio.open_nursery() as both:
                both.start_soon(obtain, 0)
                await trio.sleep(0.5)
                both.start_soon(obtain, 1)
        _say({"errors": errors, "seconds": time.perf_counter() - started})
        while await stdin.receive_some():
            pass
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a node process of the multi-provider test")
    roles = parser.add_subparsers(dest="role", required=True)
    for role in ("provider", "fetcher", "obtainer"):
        sub = roles.add_parser(role)
        sub.add_argument("--store", type=Path, required=True)
        if role == "provider":
            sub.add_argument("--blob", type=Path, required=True)
            sub.add_argument("--freeze", action="store_true")
        else:
            sub.add_argument("--digest", required=True)
            sub.add_argument("--providers", type=json.loads, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"{args.role} %(name)s: %(message)s")
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # redials as a peer dies
    if args.role == "provider":
        trio.run(provider, args.blob, args.store, args.freeze)
    elif args.role == "fetcher":
        trio.run(fetcher, args.store, args.digest, args.providers)
    else:
        trio.run(obtainer, args.store, args.digest, args.providers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
