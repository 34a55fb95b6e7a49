"""A provider killed or stopped mid-transfer does not stall the fetch: three OS processes.

Two provider processes hold the same 48 MiB blob (six 8 MiB segments); a fetcher process
fetches it from both. When the first provider is asked for its second segment it freezes
(so that segment is certainly outstanding), and the test kills it (SIGKILL) or stops it
(SIGSTOP, a provider that stalls with its connections open). The fetcher must finish within
its fetch budget with the right hash, the missing segments coming from the other provider,
and must not count a dead or stalled provider as a forger.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from gossip.blobs import blob_hash

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BLOB_BYTES = 48 * 2**20
STOP_GRACE_SECONDS = 3.0
TEST_SECONDS = 55.0  # starting three processes that import libp2p is most of it


class Child:
    """A ``python -m tests.integration.fetch_node`` process and its stdout, line by line."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self._buffer = b""

    async def line(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some()
            if not chunk:
                await self.process.wait()
                raise AssertionError(
                    f"node process exited with code {self.process.returncode} before "
                    "reporting; its error is printed above"
                )
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def signal(self, number: int) -> None:
        os.kill(self.process.pid, number)


@asynccontextmanager
async def node(*args: str, log: Path | None = None) -> AsyncIterator[Child]:
    """A node process; its log goes to ``log`` if given, else to this process's stderr."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    with open(log or os.devnull, "wb") as log_file:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.integration.fetch_node", *args],
            stdin=-1,
            stdout=-1,
            stderr=log_file if log else None,
            env=dict(os.environ, PYTHONPATH=path),
        )
    try:
        yield Child(process)
    finally:
        with trio.CancelScope(shield=True):
            if process.stdin is not None:
                await process.stdin.aclose()  # a node process ends when its stdin closes
            with trio.move_on_after(STOP_GRACE_SECONDS):
                await process.wait()
            if process.returncode is None:
                process.kill()  # also ends a stopped process
                await process.wait()


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "stopped"])
async def test_a_provider_lost_mid_transfer_does_not_stall_the_fetch(
    tmp_path: Path, fault: signal.Signals
) -> None:
    blob = os.urandom(BLOB_BYTES)
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(blob)
    fetcher_log = tmp_path / "fetcher.log"
    with trio.fail_after(TEST_SECONDS):
        async with (
            node(
                "provider", "--blob", str(blob_file), "--store", str(tmp_path / "a"), "--freeze"
            ) as lost,
            node("provider", "--blob", str(blob_file), "--store", str(tmp_path / "b")) as kept,
        ):
            providers = [await lost.line(), await kept.line()]
            assert providers[0]["digest"] == providers[1]["digest"] == blob_hash(blob)
            fetcher_args = ["--store", str(tmp_path / "fetcher"), "--digest", blob_hash(blob)]
            fetcher_args += ["--providers", json.dumps(providers)]
            async with node("fetcher", *fetcher_args, log=fetcher_log) as fetcher:
                frozen = await lost.line()  # a segment is outstanding: now lose the provider
                lost.signal(fault)
                result = await fetcher.line()

    log = fetcher_log.read_text()
    print(log)
    assert frozen["frozen"] % 2**23 == 0  # the offset of a segment
    assert "error" not in result, result["error"]
    assert result["digest"] == blob_hash(blob)
    assert result["offences"] == {}  # lost is not lying
    # The fault hit while the fetcher still wanted segments from the lost provider:
    assert f"provider {providers[0]['peer_id']} gets no more segments" in log
    assert "fetching it whole" not in log  # the other provider delivered the rest
    assert (tmp_path / "fetcher" / blob_hash(blob)).read_bytes() == blob
    assert not list((tmp_path / "fetcher").glob("*.part*"))
    print(f"fetched 48 MiB in {result['seconds']:.2f} s with the first provider {fault.name}")


@pytest.mark.parametrize("other_provider", [False, True], ids=["alone", "with-another"])
async def test_a_stopped_provider_costs_the_fetches_waiting_on_it_one_timeout(
    tmp_path: Path, other_provider: bool
) -> None:
    """A provider stopped before anyone asks (a node frozen right after it announced):
    the first fetch times out on the bulk channel without trying a libp2p stream as well.
    The second, which was waiting on the first, fails with it instead of asking the stalled
    provider again, unless it has a provider the first did not ask: then it fetches from
    that one."""
    blob = os.urandom(2**20)
    blob_file = tmp_path / "blob"
    blob_file.write_bytes(blob)
    with trio.fail_after(TEST_SECONDS):
        async with AsyncExitStack() as stack:
            p = await stack.enter_async_context(
                node("provider", "--blob", str(blob_file), "--store", str(tmp_path / "a"))
            )
            providers = [await p.line()]
            if other_provider:
                q = await stack.enter_async_context(
                    node("provider", "--blob", str(blob_file), "--store", str(tmp_path / "b"))
                )
                providers.append(await q.line())
            args = ["--store", str(tmp_path / "obtainer"), "--digest", blob_hash(blob)]
            args += ["--providers", json.dumps(providers)]
            async with node("obtainer", *args, log=tmp_path / "obtainer.log") as obtainer:
                await obtainer.line()  # connected
                p.signal(signal.SIGSTOP)
                assert obtainer.process.stdin is not None
                await obtainer.process.stdin.send_all(b"go\n")
                result = await obtainer.line()

    print((tmp_path / "obtainer.log").read_text(), result)
    first, second_error = result["errors"]
    assert first is not None and first.endswith("no answer within 10.0s")
    stored = tmp_path / "obtainer" / blob_hash(blob)
    if other_provider:
        assert second_error is None
        assert stored.read_bytes() == blob
        assert result["seconds"] < 2 * 10.0  # the other provider was asked first
    else:
        assert second_error == f"{first} (a fetch this one waited for)"
        assert result["seconds"] < 2 * 10.0  # one fetch budget, not one per caller or channel
        assert not stored.exists()
