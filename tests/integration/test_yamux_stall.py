"""Bulk blob transfers both ways over one Yamux connection, with new streams opening meanwhile.

Eight hosts in one process each fetch a multi-MiB blob from every other host while also
fetching small blobs from each of them one after another, so every connection carries bulk
data in both directions while new streams are acknowledged on it. Stock py-libp2p 0.8.1
Yamux deadlocks there (docs/architecture.md, "Yamux stall"); a stall fails the test after
``STALL_SECONDS`` with a report of the connection readers that wait to write.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Iterator

import pytest
import trio
from libp2p import create_yamux_muxer_option
from libp2p.stream_muxer.yamux.yamux import Yamux

import gossip.service
from gossip.blobs import BlobStore, blob_hash
from gossip.errors import GossipError
from gossip.muxer import ReaderSafeYamux
from gossip.service import GossipConfig, GossipService
from gossip.validation import AnnouncementPolicy

pytestmark = pytest.mark.integration

HOSTS = 8
BIG_BYTES = 4 * 2**20
SMALL_BYTES = 4096
SMALL_PER_PEER = 5
STALL_SECONDS = 60.0
# libp2p gives up on stream negotiation after 10 s, which a busy machine can exceed while
# every connection is full; a fetch is retried like a node would. A dead connection fails
# every attempt.
FETCH_ATTEMPTS = 3


def new_service(max_blob_bytes: int = BIG_BYTES) -> GossipService:
    policy = AnnouncementPolicy.without_registry("yamux", max_blob_bytes)
    config = GossipConfig(max_blob_bytes=max_blob_bytes, fetch_timeout=STALL_SECONDS * 2)
    return GossipService(config, policy, BlobStore())


def yamux_connections(services: list[GossipService]) -> Iterator[tuple[int, Yamux]]:
    for index, host in enumerate(services):
        for connections in host._host.get_network().connections.values():
            for connection in connections:
                if isinstance(connection.muxed_conn, Yamux):
                    yield index, connection.muxed_conn


def all_tasks() -> Iterator[trio.lowlevel.Task]:
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        yield task
        pending.extend(child for n in task.child_nurseries for child in n.child_tasks)


def where(task: trio.lowlevel.Task, depth: int = 3) -> str:
    """The innermost ``depth`` frames of ``task`` outside trio, innermost last."""
    frames = [(f, n) for f, n in task.iter_await_frames() if "/trio/" not in f.f_code.co_filename]
    summary = traceback.StackSummary.extract(frames[-depth:], lookup_lines=False)
    return " > ".join(f"{s.name} {os.path.basename(s.filename)}:{s.lineno}" for s in summary)


def blocked_readers_report(services: list[GossipService]) -> str:
    """Connections whose reader waits to write (the deadlock), with the write lock's holder."""
    readers = {}
    for task in all_tasks():
        for frame, _ in task.iter_await_frames():
            owner = frame.f_locals.get("self")
            if frame.f_code.co_name == "handle_incoming" and isinstance(owner, Yamux):
                readers[id(owner)] = task
    names = {host.peer_id: f"host{i}" for i, host in enumerate(services)}
    lines = []
    for index, conn in yamux_connections(services):
        reader = readers.get(id(conn))
        if reader is None or "_write_frame" not in where(reader):
            continue
        holder = conn._write_lock.statistics().owner
        lines.append(
            f"host{index}->{names.get(conn.peer_id.to_base58(), '?')}: reader at {where(reader)}; "
            f"write lock held by {where(holder, 8) if holder else 'nobody'}"
        )
    return "\n".join(lines) or "(no reader waits to write: slow, not deadlocked)"


async def break_connections(services: list[GossipService]) -> None:
    """Close every socket, so tasks stuck in a dead connection (some shielded) can finish."""
    with trio.move_on_after(10):
        for _, conn in list(yamux_connections(services)):
            with contextlib.suppress(Exception):
                await conn.secured_conn.close()


@pytest.mark.slow
async def test_bulk_fetches_both_ways_between_eight_hosts_in_one_process_finish() -> None:
    services = [new_service() for _ in range(HOSTS)]
    big = [os.urandom(BIG_BYTES) for _ in range(HOSTS)]
    small = [[os.urandom(SMALL_BYTES) for _ in range(SMALL_PER_PEER)] for _ in range(HOSTS)]
    for host, blob, blobs in zip(services, big, small, strict=True):
        for data in [blob, *blobs]:
            host.store.put(data)
    fetched: dict[tuple[int, str], bytes] = {}
    failures: list[str] = []

    async def fetch_all(i: int, j: int, blobs: list[bytes]) -> None:
        for data in blobs:
            digest = blob_hash(data)
            for attempt in range(1, FETCH_ATTEMPTS + 1):
                try:
                    fetched[i, digest] = await services[i].fetch(digest, [services[j].peer_id])
                    break
                except GossipError as exc:
                    failures.append(f"host{i} from host{j}, attempt {attempt}: {exc}")

    report: list[str] = []

    async def watchdog(guarded: trio.CancelScope) -> None:
        await trio.sleep(STALL_SECONDS)
        report.append(blocked_readers_report(services))  # while the stuck tasks are still there
        await break_connections(services)
        guarded.cancel()

    async with trio.open_nursery() as hosts:
        for host in services:
            await hosts.start(host.run)
        with trio.fail_after(30):
            async with trio.open_nursery() as dials:
                for i, host in enumerate(services):
                    for other in services[i + 1 :]:
                        dials.start_soon(host.connect, other.listen_addrs[0])
        started = trio.current_time()
        async with trio.open_nursery() as guard:
            guard.start_soon(watchdog, guard.cancel_scope)
            async with trio.open_nursery() as fetches:
                for i in range(HOSTS):
                    for j in range(HOSTS):
                        if i != j:
                            fetches.start_soon(fetch_all, i, j, [big[j]])
                            fetches.start_soon(fetch_all, i, j, small[j])
            guard.cancel_scope.cancel()
        elapsed = trio.current_time() - started
        hosts.cancel_scope.cancel()

    expected = HOSTS * (HOSTS - 1) * (1 + SMALL_PER_PEER)
    if report or len(fetched) < expected:
        pytest.fail(
            f"{len(fetched)} of {expected} fetches done ({len(failures)} failed attempts) in "
            f"{elapsed:.0f}s; Yamux readers waiting to write:\n"
            f"{report[0] if report else '(none)'}\nfailures:\n" + "\n".join(failures[:5])
        )
    print(
        f"{expected} fetches ({HOSTS * (HOSTS - 1)} of {BIG_BYTES >> 20} MiB) in {elapsed:.1f}s, "
        f"{len(failures)} failed attempts retried"
    )
    for (_, digest), data in fetched.items():
        assert blob_hash(data) == digest


@pytest.mark.parametrize("dialer", ["patched", "stock"])
async def test_patched_and_stock_hosts_exchange_blobs_both_ways(
    dialer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    patched = new_service()
    with monkeypatch.context() as stock_muxers:
        stock_muxers.setattr(gossip.service, "muxer_options", create_yamux_muxer_option)
        stock_muxers.setattr(gossip.service, "honour_muxer_options", lambda host: None)
        stock = new_service()
    pair = [patched, stock]
    big = [os.urandom(BIG_BYTES) for _ in pair]
    small = [[os.urandom(SMALL_BYTES) for _ in range(SMALL_PER_PEER)] for _ in pair]
    for host, blob, blobs in zip(pair, big, small, strict=True):
        for data in [blob, *blobs]:
            host.store.put(data)

    async def fetch_all(i: int, blobs: list[bytes]) -> None:
        for data in blobs:
            assert await pair[i].fetch(blob_hash(data), [pair[1 - i].peer_id]) == data

    async with trio.open_nursery() as hosts:
        for host in pair:
            await hosts.start(host.run)
        with trio.fail_after(STALL_SECONDS):
            if dialer == "patched":
                await patched.connect(stock.listen_addrs[0])
            else:
                await stock.connect(patched.listen_addrs[0])
            async with trio.open_nursery() as fetches:
                for i in range(2):
                    fetches.start_soon(fetch_all, i, [big[1 - i]])
                    fetches.start_soon(fetch_all, i, small[1 - i])
        kinds = {index: type(conn) for index, conn in yamux_connections(pair)}
        hosts.cancel_scope.cancel()

    assert kinds == {0: ReaderSafeYamux, 1: Yamux}
    assert all(host.store.has(blob_hash(blob)) for host in pair for blob in big)
