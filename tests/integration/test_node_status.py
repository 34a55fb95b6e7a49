"""A node's status server during a federation: two hospital nodes on real libp2p hosts and the
in-process EVM (rounds kept in the Consortium contract), each serving /health, /status,
/metrics and / on a free local port; the figures they serve while the rounds run match the
rounds the nodes report in their events."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import trio

from node.config import MedswarmConfig, StatusSettings, with_overrides
from node.data import resolve_data_dir
from testnet.local import LocalRun, run_local_federation
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

ROUNDS = 4
NODES = 2
SAMPLE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")


async def http_get(url: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """One GET over a fresh connection: status code, headers (lowercase names), body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body)
    return int(status_line.split(" ")[1]), headers, body


def parse_metrics(text: str) -> dict[str, float]:
    """Samples by ``name{labels}`` (exactly as written), checking every line's syntax."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match is not None, f"not a sample line: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """Run the federation while polling one node's status server; the run directory and
    what was served, in order."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("status")
    config = with_overrides(
        MedswarmConfig(), rounds=ROUNDS, update_timeout=10.0, ledger="consortium"
    )
    config = dataclasses.replace(config, status=StatusSettings(bind="127.0.0.1:0"))
    local = LocalRun(
        config=config, nodes=NODES, data_dir=resolve_data_dir(None, os.environ), out_dir=out
    )
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        done = trio.Event()

        async def federate() -> None:
            await run_local_federation(local)
            done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(federate)

            def listening() -> list[dict[str, Any]]:
                return [
                    e for e in read_events(out / "events.jsonl") if e["event"] == "status-listening"
                ]

            await wait_for(lambda: len(listening()) == NODES, timeout=60, interval=0.1)
            node, url = listening()[0]["node"], listening()[0]["url"]
            with trio.fail_after(120):
                while not done.is_set():
                    try:
                        snapshot = {"node": node}
                        for path in ("/health", "/status", "/metrics", "/"):
                            snapshot[path] = await http_get(url, path)
                    except OSError:
                        break  # the federation ended and the server with it
                    seen.append(snapshot)
                    await trio.sleep(0.1)

    trio.run(main)
    return out, seen


def test_health_and_status_follow_the_rounds(observed: tuple[Path, list[dict[str, Any]]]) -> None:
    out, seen = observed
    final = {line["round"]: line["global_hash"] for line in read_events(out / "rounds.jsonl")}
    assert sorted(final) == list(range(1, ROUNDS + 1))

    statuses = [json.loads(s["/status"][2]) for s in seen]
    assert any(s["completed_round"] >= 1 for s in statuses)  # the polls saw rounds finish
    for snapshot, status in zip(seen, statuses, strict=True):
        code, headers, body = snapshot["/health"]
        assert code == 200 and headers["content-type"] == "application/json"
        assert json.loads(body)["status"] == "ok"
        assert snapshot["/status"][0] == 200
        assert status["node"] == snapshot["node"] and status["rounds"] == ROUNDS
        if status["completed_round"]:  # connected, and the registry read, by then
            assert len(status["membership"]) == NODES
            assert len(status["peers"]["connected"]) == NODES - 1
            assert status["last_global_hash"] == final[status["completed_round"]]
            assert status["last_round"]["round"] == status["completed_round"]
    # standings read from the Consortium once a round has put contributions there
    scored = [
        s for s in statuses if s["membership"] and all(m["contribution"] for m in s["membership"])
    ]
    assert scored and scored[-1]["ledger"] == "consortium"
    for member in scored[-1]["membership"]:
        assert 0 < member["reputation"] <= 10_000
    assert scored[-1]["reputation"] == next(
        m["reputation"] for m in scored[-1]["membership"] if m["self"]
    )


def test_metrics_match_the_round_events(observed: tuple[Path, list[dict[str, Any]]]) -> None:
    out, seen = observed
    node = seen[0]["node"]
    rounds = [
        e for e in read_events(out / "events.jsonl") if e["event"] == "round" and e["node"] == node
    ]
    checked = 0
    for snapshot in seen:
        code, headers, body = snapshot["/metrics"]
        assert code == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
        metrics = parse_metrics(body.decode())
        done = int(metrics["medswarm_round_completed"])
        assert metrics["medswarm_rounds_completed_total"] == done
        assert metrics["medswarm_round_duration_seconds_count"] == done
        assert metrics['medswarm_round_duration_seconds_bucket{le="+Inf"}'] == done
        events = [e for e in rounds if e["round"] <= done]
        assert len(events) == done
        assert metrics["medswarm_round_duration_seconds_sum"] == pytest.approx(
            sum(e["seconds"] for e in events), abs=1e-6
        )
        # the round events count each round's traffic; the totals also count what came
        # before the first round and after the last one
        sent = metrics['medswarm_network_bytes_total{direction="sent"}']
        received = metrics['medswarm_network_bytes_total{direction="received"}']
        assert sent >= sum(e["bytes_sent"] for e in events)
        assert received >= sum(e["bytes_received"] for e in events)
        assert metrics['medswarm_chain_request_duration_seconds_count{kind="call"}'] > 0
        assert metrics["medswarm_chain_transactions_pending"] >= 0
        if done:
            assert metrics["medswarm_peers_connected"] == NODES - 1
            assert metrics["medswarm_members"] == NODES
            checked += 1
    assert checked >= 1
    last = parse_metrics(seen[-1]["/metrics"][2].decode())
    assert last['medswarm_chain_request_duration_seconds_count{kind="transaction"}'] > 0
    assert not [key for key in last if key.startswith("medswarm_gossip_rejected_total")]


def test_the_dashboard_shows_the_rounds_and_members(
    observed: tuple[Path, list[dict[str, Any]]],
) -> None:
    _out, seen = observed
    code, headers, body = seen[-1]["/"]
    status = json.loads(seen[-1]["/status"][2])
    page = body.decode()
    assert code == 200 and headers["content-type"] == "text/html; charset=utf-8"
    for member in status["membership"]:
        assert member["address"] in page
    if status["completed_round"]:
        assert status["last_global_hash"] in page
