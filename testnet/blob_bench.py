"""Blob throughput between two node processes: raw TCP, the libp2p stream, the bulk channel.

:func:`measure_blob_throughput` writes a random blob to a temporary file and starts two OS
processes on 127.0.0.1 (``python -m testnet.blob_bench provider|fetcher``):

- the provider: a :class:`GossipService` holding the blob, plus a plain TCP server that
  sends the same bytes to whoever connects;
- the fetcher: one :class:`GossipService` with the bulk channel and one without (so its
  fetches use the ``/medswarm/blob/1.0.0`` Yamux stream); each repetition times a raw TCP
  receive of the blob, a fetch over the Yamux stream and a fetch over the bulk channel, in
  that order, so machine noise hits all three alike.

A fetch is timed from the call to :meth:`GossipService.fetch` until verified bytes are stored.
Every wait is bounded and both processes are stopped whatever happens.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from gossip.blobs import BlobStore
from gossip.service import GossipConfig, GossipService
from gossip.validation import AnnouncementPolicy
from testnet.errors import TestnetError

HOST = "127.0.0.1"
PATHS = ("raw_tcp", "yamux", "bulk")
START_TIMEOUT = 90.0  # importing libp2p alone takes seconds on a loaded machine
STOP_GRACE_SECONDS = 5.0
SLOWEST_MB_S = 5.0  # timeouts assume no path is slower than this


@dataclass(frozen=True)
class BlobBenchResult:
    """Seconds per transfer for each path, and the derived medians in MB/s (10^6 bytes/s)."""

    size_bytes: int
    seconds: dict[str, list[float]]

    def median_mb_s(self, path: str) -> float:
        return self.size_bytes / statistics.median(self.seconds[path]) / 1e6

    def as_dict(self) -> dict[str, Any]:
        raw, yamux, bulk = (self.median_mb_s(path) for path in PATHS)
        return {
            "size_bytes": self.size_bytes,
            "repeat": len(self.seconds["bulk"]),
            "throughput_mb_s": bulk,
            "raw_tcp_mb_s": raw,
            "yamux_mb_s": yamux,
            "ratio_to_raw_tcp": bulk / raw,
            "yamux_ratio_to_raw_tcp": yamux / raw,
            "speedup_over_yamux": bulk / yamux,
            "seconds": self.seconds,
        }


def measure_blob_throughput(size_bytes: int, repeat: int) -> BlobBenchResult:
    """Time ``repeat`` transfers of a random ``size_bytes`` blob over each path."""
    if size_bytes < 1 or repeat < 1:
        raise TestnetError("the blob size and the number of repetitions must be positive")
    return trio.run(_measure, size_bytes, repeat)


async def _measure(size_bytes: int, repeat: int) -> BlobBenchResult:
    transfer_timeout = _fetch_timeout(size_bytes)
    with tempfile.TemporaryDirectory(prefix="medswarm-blob-bench-") as scratch:
        blob_file = Path(scratch) / "blob"
        blob_file.write_bytes(os.urandom(size_bytes))
        async with _child("provider", "--blob", str(blob_file)) as provider:
            ready = await _read_json_line(provider, "provider", START_TIMEOUT)
            fetcher_args = ["--provider", json.dumps(ready), "--size", str(size_bytes)]
            async with _child("fetcher", *fetcher_args, "--repeat", str(repeat)) as fetcher:
                budget = START_TIMEOUT + repeat * len(PATHS) * transfer_timeout
                measured = await _read_json_line(fetcher, "fetcher", budget)
    return BlobBenchResult(size_bytes, {path: measured[path] for path in PATHS})


@asynccontextmanager
async def _child(role: str, *args: str) -> AsyncIterator[trio.Process]:
    """A ``python -m testnet.blob_bench`` process running this very code; stopped on exit."""
    code_root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")]))
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "testnet.blob_bench", role, *args],
        stdin=-1,
        stdout=-1,
        env=dict(os.environ, PYTHONPATH=path),
    )
    try:
        yield process
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)


async def _stop(process: trio.Process) -> None:
    if process.stdin is not None:
        await process.stdin.aclose()  # the provider exits when its stdin closes
    with trio.move_on_after(STOP_GRACE_SECONDS):
        await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


async def _read_json_line(process: trio.Process, role: str, timeout: float) -> dict[str, Any]:
    assert process.stdout is not None
    buffered = b""
    with trio.move_on_after(timeout):
        while b"\n" not in buffered:
            chunk = await process.stdout.receive_some()
            if not chunk:
                await process.wait()
                raise TestnetError(
                    f"blob bench {role} exited with code {process.returncode} before reporting; "
                    "its error is printed above"
                )
            buffered += chunk
        result: dict[str, Any] = json.loads(buffered.split(b"\n", 1)[0])
        return result
    raise TestnetError(f"blob bench {role} did not report within {timeout:.0f}s")


# ----------------------------------------------------------------- the two node processes


def _config(size_bytes: int) -> GossipConfig:
    return GossipConfig(
        listen_host=HOST, max_blob_bytes=size_bytes, fetch_timeout=_fetch_timeout(size_bytes)
    )


def _fetch_timeout(size_bytes: int) -> float:
    return 10.0 + size_bytes / (SLOWEST_MB_S * 1e6)


def _service(config: GossipConfig) -> GossipService:
    policy = AnnouncementPolicy.without_registry("bench", config.max_blob_bytes)
    return GossipService(config, policy, BlobStore(max_blob_bytes=config.max_blob_bytes))


async def _provider(blob_file: Path) -> None:
    data = blob_file.read_bytes()
    service = _service(_config(len(data)))
    digest = service.store.put(data)

    async def send_blob(stream: trio.SocketStream) -> None:
        with suppress(trio.BrokenResourceError):  # the fetcher hung up: its loss
            await stream.send_all(data)

    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        listeners = await nursery.start(partial(trio.serve_tcp, send_blob, 0, host=HOST))
        raw_port = listeners[0].socket.getsockname()[1]
        ready = {"address": service.listen_addrs[0], "peer_id": service.peer_id}
        print(json.dumps(ready | {"raw_port": raw_port, "digest": digest}), flush=True)
        stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        while await stdin.receive_some():  # run until the parent closes our stdin
            pass
        nursery.cancel_scope.cancel()


async def _fetcher(provider: dict[str, Any], size_bytes: int, repeat: int) -> None:
    config = _config(size_bytes)
    bulk = _service(config)
    yamux = _service(replace(config, bulk_channel=False))
    seconds: dict[str, list[float]] = {path: [] for path in PATHS}
    async with trio.open_nursery() as nursery:
        for service in (bulk, yamux):
            await nursery.start(service.run)
            await service.connect(provider["address"])
        raw_buffer = bytearray(size_bytes)
        for _ in range(repeat):
            seconds["raw_tcp"].append(await _time_raw_tcp(provider["raw_port"], raw_buffer))
            seconds["yamux"].append(await _time_fetch(yamux, provider, bulk_expected=False))
            seconds["bulk"].append(await _time_fetch(bulk, provider, bulk_expected=True))
        print(json.dumps(seconds), flush=True)
        nursery.cancel_scope.cancel()


async def _time_raw_tcp(port: int, buffer: bytearray) -> float:
    """Receive the blob into a buffer that is already mapped: the transport alone."""
    size_bytes = len(buffer)
    view = memoryview(buffer)
    started = time.perf_counter()
    with trio.fail_after(_fetch_timeout(size_bytes)):
        stream = await trio.open_tcp_stream(HOST, port)
        async with stream:
            received = 0
            while received < size_bytes:
                got = await stream.socket.recv_into(view[received:])
                if not got:
                    raise TestnetError(f"raw TCP sender stopped after {received} bytes")
                received += got
    return time.perf_counter() - started


async def _time_fetch(
    service: GossipService, provider: dict[str, Any], bulk_expected: bool
) -> float:
    service.store = BlobStore(max_blob_bytes=service.config.max_blob_bytes)  # fetch anew
    before = service.traffic["bulk_received"]
    started = time.perf_counter()
    await service.fetch(provider["digest"], [provider["peer_id"]])
    elapsed = time.perf_counter() - started
    if (service.traffic["bulk_received"] > before) != bulk_expected:
        raise TestnetError("a fetch took another path than the one measured; see the log above")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one process of the blob throughput bench")
    roles = parser.add_subparsers(dest="role", required=True)
    roles.add_parser("provider").add_argument("--blob", type=Path, required=True)
    fetcher = roles.add_parser("fetcher")
    fetcher.add_argument("--provider", type=json.loads, required=True)
    fetcher.add_argument("--size", type=int, required=True)
    fetcher.add_argument("--repeat", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="blob bench %(name)s: %(message)s")
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # redials as the other side stops
    if args.role == "provider":
        trio.run(_provider, args.blob)
    else:
        trio.run(_fetcher, args.provider, args.size, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
