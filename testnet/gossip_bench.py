"""All-to-all dissemination between node processes: the bulk channel beside the stock path.

:func:`measure_dissemination` starts ``nodes`` OS processes on 127.0.0.1
(``python -m testnet.gossip_bench_node``), each running two real :class:`GossipService`
hosts (libp2p over TCP, GossipSub, signed announcements, :class:`BlobStore`): one fetches
over the bulk channel, the other with ``network.bulk_channel = false``, i.e. over
``/medswarm/blob/1.0.0`` Yamux streams (the baseline). Membership is a fixed list of the
bench's own hosts, handed out by this process: the bench measures the network layer, not the
chain.

Each round, on one path, every process makes a fresh random blob, stores it, announces it
and fetches every other process's blob on its announcement; the round ends when every
process holds all ``nodes`` blobs. This process coordinates the rounds over the children's
stdin and stdout, so start-up and connection set-up are not timed. A round is timed from
sending the round command to the last process's report; its CPU time is the sum over
processes of the CPU seconds each spent from just before to just after the round. After
each round every process re-hashes the blobs it holds, outside the timing. Rounds alternate
between the paths (which goes first alternates too) so machine noise hits both alike; the
first round of each path is a warm-up and is not counted.

Every wait is bounded, and every process is stopped whatever happens.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from gossip.service import GossipConfig
from testnet.errors import TestnetError
from testnet.gossip_bench_node import PATHS, PEER_TIMEOUT, fetch_timeout

START_TIMEOUT = 120.0  # several processes importing libp2p at once on a busy machine
STOP_GRACE_SECONDS = 5.0
COMMAND_TIMEOUT = 30.0  # a command answered without network work (cpu, check)


@dataclass(frozen=True)
class GossipBenchResult:
    """Per measured round and path: wall seconds and CPU seconds summed over processes."""

    nodes: int
    size_bytes: int
    seconds: dict[str, list[float]]
    cpu_seconds: dict[str, list[float]]
    warm_up_seconds: dict[str, float]
    blobs_verified: int
    max_concurrent_fetches: int
    load_average_before: tuple[float, float, float]
    load_average: tuple[float, float, float]

    def median(self, path: str) -> float:
        return statistics.median(self.seconds[path])

    def median_cpu(self, path: str) -> float:
        return statistics.median(self.cpu_seconds[path])

    def as_dict(self) -> dict[str, Any]:
        ours, baseline = self.median("bulk"), self.median("stock")
        return {
            "nodes": self.nodes,
            "size_mib": self.size_bytes / 2**20,
            "rounds": len(self.seconds["bulk"]),
            "round_seconds": ours,
            "baseline_round_seconds": baseline,
            "speedup": baseline / ours,
            "cpu_seconds": self.median_cpu("bulk"),
            "baseline_cpu_seconds": self.median_cpu("stock"),
            "round_seconds_each": self.seconds["bulk"],
            "baseline_round_seconds_each": self.seconds["stock"],
            "cpu_seconds_each": self.cpu_seconds["bulk"],
            "baseline_cpu_seconds_each": self.cpu_seconds["stock"],
            "warm_up_round_seconds": self.warm_up_seconds["bulk"],
            "baseline_warm_up_round_seconds": self.warm_up_seconds["stock"],
            "blobs_verified": self.blobs_verified,
            "max_concurrent_fetches": self.max_concurrent_fetches,
            "load_average_before": list(self.load_average_before),
            "load_average": list(self.load_average),
        }


def check_arguments(
    nodes: int, size_mib: int, rounds: int, max_concurrent_fetches: int | None = None
) -> None:
    """Raise :class:`TestnetError` naming the first argument the bench cannot run with."""
    if nodes < 2:
        raise TestnetError(f"--nodes must be at least 2, got {nodes}")
    if size_mib < 1:
        raise TestnetError(f"--size-mib must be at least 1, got {size_mib}")
    if rounds < 2:
        raise TestnetError(f"--rounds must be at least 2 (the first is warm-up), got {rounds}")
    if max_concurrent_fetches is not None and max_concurrent_fetches < 1:
        raise TestnetError(
            f"--max-concurrent-fetches must be at least 1, got {max_concurrent_fetches}"
        )


def measure_dissemination(
    nodes: int, size_mib: int, rounds: int, max_concurrent_fetches: int | None = None
) -> GossipBenchResult:
    """Run ``rounds`` rounds on each path; see the module docstring.

    ``max_concurrent_fetches`` overrides ``network.max_concurrent_fetches`` of every node.
    """
    check_arguments(nodes, size_mib, rounds, max_concurrent_fetches)
    concurrency = max_concurrent_fetches or GossipConfig().max_concurrent_fetches
    return trio.run(_measure, nodes, size_mib * 2**20, rounds, concurrency)


async def _measure(nodes: int, size_bytes: int, rounds: int, concurrency: int) -> GossipBenchResult:
    seconds: dict[str, list[float]] = {path: [] for path in PATHS}
    cpu: dict[str, list[float]] = {path: [] for path in PATHS}
    warm_up: dict[str, float] = {}
    verified = 0
    load_before = os.getloadavg()
    async with _children(nodes, size_bytes, concurrency) as children:
        ready = await _answers(children, "ready", START_TIMEOUT)
        await _tell(children, {"cmd": "peers", "peers": ready})
        await _answers(children, "connected", 2 * PEER_TIMEOUT)
        round_timeout = fetch_timeout(size_bytes, nodes) * nodes + 10.0
        for round_number in range(1, rounds + 1):
            order = PATHS if round_number % 2 else PATHS[::-1]
            for path in order:
                wall, cpu_seconds, owns = await _timed_round(
                    children, path, round_number, size_bytes, round_timeout
                )
                verified += await _check_round(children, path, round_number, owns)
                if round_number == 1:
                    warm_up[path] = wall
                else:
                    seconds[path].append(wall)
                    cpu[path].append(cpu_seconds)
    return GossipBenchResult(
        nodes,
        size_bytes,
        seconds,
        cpu,
        warm_up,
        verified,
        concurrency,
        load_before,
        os.getloadavg(),
    )


async def _timed_round(
    children: Sequence[_Child], path: str, round_number: int, size_bytes: int, timeout: float
) -> tuple[float, float, set[str]]:
    """Wall seconds, CPU seconds summed over the nodes, and the blobs the nodes made."""
    before = await _cpu(children)
    started = time.perf_counter()
    await _tell(children, {"cmd": "round", "path": path, "round": round_number})
    reports = await _answers(children, "done", timeout)
    wall = time.perf_counter() - started
    after = await _cpu(children)
    if any(report["done"] != round_number or report["path"] != path for report in reports):
        raise TestnetError(f"a node reported another round than {path} round {round_number}")
    blobs_bytes = (len(children) - 1) * size_bytes
    for index, report in enumerate(reports):
        expected_bulk = blobs_bytes if path == "bulk" else 0
        if report["received"] < blobs_bytes or report["bulk_received"] != expected_bulk:
            raise TestnetError(
                f"node {index} received {report['bulk_received']} of {report['received']} "
                f"bytes of {path} round {round_number} over the bulk channel, expected "
                f"{expected_bulk} of at least {blobs_bytes}: some fetches took another path"
            )
    return wall, sum(after) - sum(before), {report["own"] for report in reports}


async def _cpu(children: Sequence[_Child]) -> list[float]:
    await _tell(children, {"cmd": "cpu"})
    return [float(answer["cpu"]) for answer in await _answers(children, "cpu", COMMAND_TIMEOUT)]


async def _check_round(
    children: Sequence[_Child], path: str, round_number: int, owns: set[str]
) -> int:
    """Every node must hold every node's blob of the round, with bytes that hash to it."""
    await _tell(children, {"cmd": "check", "path": path, "round": round_number})
    holdings = [set(answer["held"]) for answer in await _answers(children, "held", COMMAND_TIMEOUT)]
    for index, held in enumerate(holdings):
        if held != owns or len(owns) != len(children):
            raise TestnetError(
                f"node {index} holds {len(held & owns)} of the {len(children)} verified blobs "
                f"of {path} round {round_number}"
            )
    return sum(len(held) for held in holdings)


# ------------------------------------------------------------------------ the node processes


class _Child:
    """A node process and the JSON lines it writes."""

    def __init__(self, index: int, process: trio.Process) -> None:
        self.index = index
        self.process = process
        self._buffered = b""

    async def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(json.dumps(message).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buffered:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                await self.process.wait()
                raise TestnetError(
                    f"gossip bench node {self.index} exited with code "
                    f"{self.process.returncode}; its error is printed above"
                )
            self._buffered += chunk
        line, self._buffered = self._buffered.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise TestnetError(f"gossip bench node {self.index}: {message['error']}")
        return message


async def _tell(children: Sequence[_Child], message: dict[str, Any]) -> None:
    for child in children:
        await child.send(message)


async def _answers(children: Sequence[_Child], key: str, timeout: float) -> list[Any]:
    """Each child's next message, which must carry ``key``, in child order."""
    answers: list[Any] = []
    with trio.move_on_after(timeout):
        for child in children:
            message = await child.receive()
            if key not in message:
                raise TestnetError(f"gossip bench node {child.index} answered {message}")
            answers.append(message)
        return answers
    raise TestnetError(
        f"gossip bench node {len(answers)} did not answer {key!r} within {timeout:.0f}s"
    )


@asynccontextmanager
async def _children(nodes: int, size_bytes: int, concurrency: int) -> AsyncIterator[list[_Child]]:
    """``nodes`` processes running ``testnet.gossip_bench_node``; all stopped on exit."""
    code_root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")]))
    children: list[_Child] = []
    try:
        for index in range(nodes):
            process = await trio.lowlevel.open_process(
                [
                    sys.executable,
                    "-m",
                    "testnet.gossip_bench_node",
                    *("--index", str(index), "--nodes", str(nodes), "--size", str(size_bytes)),
                    *("--max-concurrent-fetches", str(concurrency)),
                ],
                stdin=-1,
                stdout=-1,
                env=dict(os.environ, PYTHONPATH=path),
            )
            children.append(_Child(index, process))
        yield children
    finally:
        with trio.CancelScope(shield=True):
            await _stop([child.process for child in children])


async def _stop(processes: list[trio.Process]) -> None:
    for process in processes:
        if process.stdin is not None:
            with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await process.stdin.aclose()  # a node exits when its stdin closes
    with trio.move_on_after(STOP_GRACE_SECONDS):
        for process in processes:
            await process.wait()
    for process in processes:
        if process.returncode is None:
            process.kill()
            await process.wait()
