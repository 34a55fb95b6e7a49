"""No row of a hospital's data is in what its node sends.

Four Fed-Heart-Disease hospitals run two rounds on real libp2p hosts on 127.0.0.1 and the
in-process EVM (testnet/local.py), in the demo's setting (round 1 sends feature means and mean
squares, round 2 trains with SCAFFOLD) and with plain FedAvg. Everything each node sends is
captured twice (wire_capture.py): as written to its TCP sockets, where libp2p's Noise and the
bulk channel's cipher have encrypted it, so that a socket capture alone would pass even a node
that sent its raw rows; and as handed to those ciphers. Every 8-byte window of every row of the
node's data, in each encoding a leak could take (row_windows.py), is searched for in both.

The positive controls show the search can fail: in a federation, a row one node serves as an
extra blob, which another fetches before round 1, is found in the first one's plaintext capture
and not in its socket capture (it is encrypted there); between bare hosts, a row served over
the bulk channel and a line of the file over a libp2p stream are found in the plaintext
capture, and a row written to a socket in clear in the socket capture.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import trio
from eth_account import Account
from row_windows import Hit, RowWindows, site_encodings
from wire_capture import NodeCapture, WireCapture

import testnet.local
from gossip.blobs import BlobStore, blob_hash
from gossip.messages import Announcement
from gossip.service import GossipConfig, GossipService
from gossip.validation import AnnouncementPolicy
from node.config import MedswarmConfig, config_from_dict, load_config, with_overrides
from node.data import load_site, resolve_data_dir
from node.hospital import HospitalNode
from testnet.local import LocalRun, run_local_federation

pytestmark = pytest.mark.integration

DEMO = Path(__file__).parents[2] / "testnet" / "demo.toml"
ROUNDS = 2


def demo_setting() -> MedswarmConfig:
    return with_overrides(load_config(DEMO), rounds=ROUNDS, update_timeout=10.0)


def fedavg_setting() -> MedswarmConfig:
    return config_from_dict({"federation": {"rounds": ROUNDS, "update_timeout": 10.0}})


@dataclass(frozen=True)
class Leak:
    """Bytes the node of site ``sender`` serves as an extra blob, which the node of site
    ``fetcher`` fetches before round 1 (for the positive control)."""

    sender: str
    fetcher: str
    data: bytes


def captured_nodes(
    wire: WireCapture, built: list[Any], leak: Leak | None = None
) -> type[HospitalNode]:
    """A :class:`HospitalNode` whose sending is captured by ``wire``, appended to ``built``."""

    class CapturedNode(HospitalNode):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if leak is not None and self.name == leak.sender:
                self.gossip.store.put(leak.data)
            self.capture = wire.attach(
                self.gossip, self.name, lambda: self.current_round, self.address
            )
            # public: its hash is the chain's genesis
            self.initial_blob = self.gossip.store.get(self.global_hash)
            self.published: list[bytes] = []
            publish = self.gossip.publish

            async def publish_recorded(announcement: Announcement) -> None:
                self.published.append(announcement.encode())
                await publish(announcement)

            self.gossip.publish = publish_recorded  # type: ignore[method-assign]
            built.append(self)

        async def start(self, nursery: trio.Nursery) -> None:
            with wire.acting_as(self.capture):
                await super().start(nursery)
            wire.listening(self.capture, self.gossip)

        async def register(self) -> None:
            with wire.acting_as(self.capture):
                await super().register()

        async def connect_to_members(self, *args: Any, **kwargs: Any) -> None:
            with wire.acting_as(self.capture):
                await super().connect_to_members(*args, **kwargs)

        async def run(self, rounds: int) -> None:
            with wire.acting_as(self.capture):
                if leak is not None and self.name == leak.fetcher:
                    sender = next(n for n in built if n.name == leak.sender)
                    await self.gossip.obtain(blob_hash(leak.data), [sender.gossip.peer_id])
                await super().run(rounds)

    return CapturedNode


def described(hits: list[Hit]) -> str:
    first = sorted({(h.encoding, h.row, h.window.hex()) for h in hits})[:10]
    return f"{len(hits)} windows of rows found, e.g. (encoding, row, bytes): {first}"


def federate(
    config: MedswarmConfig, out: Path, monkeypatch: pytest.MonkeyPatch, leak: Leak | None = None
) -> tuple[Any, WireCapture, list[Any]]:
    """Four captured hospitals through ``config``'s rounds: the run's summary, the capture,
    the nodes."""
    torch.set_num_threads(1)
    wire = WireCapture()
    wire.patch(monkeypatch)
    nodes: list[Any] = []
    monkeypatch.setattr(testnet.local, "HospitalNode", captured_nodes(wire, nodes, leak))
    data_dir = resolve_data_dir(None, os.environ)
    local = LocalRun(config=config, nodes=4, data_dir=data_dir, out_dir=out)

    async def run() -> Any:
        wire.tap_sockets()
        return await run_local_federation(local)

    return trio.run(run), wire, nodes


@pytest.mark.parametrize("setting", [demo_setting, fedavg_setting], ids=["demo", "fedavg"])
def test_no_row_of_a_node_is_in_what_it_sends(
    setting: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary, wire, nodes = federate(setting(), tmp_path, monkeypatch)
    data_dir = resolve_data_dir(None, os.environ)

    assert summary.nodes_agree
    assert wire.unattributed == Counter()  # every byte sent is some node's
    assert any(node.gossip.traffic["bulk_sent"] for node in nodes)  # both channels were used
    lines = []
    for node in nodes:
        capture: NodeCapture = node.capture
        encodings = site_encodings(node.learner.loaded_site, node.learner.site, data_dir)
        windows = RowWindows(encodings, public=[node.initial_blob])
        assert windows.rows_too_thin() == {}
        # The captures hold what the node sent: every announcement it published, at least
        # the bytes it counts as sent itself, and more again once encrypted and framed.
        plaintext, sockets = capture.plaintext, capture.sockets
        assert node.published
        assert all(any(sent in s for s in plaintext.streams) for sent in node.published)
        assert plaintext.total >= node.gossip.traffic["sent"] > 0
        assert sockets.total > plaintext.total
        assert capture.chain.total > 0  # its registration, at least

        for depth in (plaintext, sockets, capture.chain):
            hits = windows.find(depth.streams)
            assert hits == [], described(hits)

        chain = capture.chain
        rounds = sorted(set(plaintext.per_round) | set(sockets.per_round) | set(chain.per_round))
        lines.append(
            f"{node.name}: {len(windows)} windows searched ({windows.exclusions}); "
            "bytes sent by round (0: start-up) "
            + ", ".join(
                f"{r}: {plaintext.per_round[r]} plaintext / {sockets.per_round[r]} socket / "
                f"{chain.per_round[r]} chain"
                for r in rounds
            )
        )
    print("\n".join(lines))


def test_a_row_a_node_serves_in_a_federation_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = resolve_data_dir(None, os.environ)
    site = load_site("heart-disease", "cleveland", data_dir)
    windows = RowWindows(site_encodings(site, site, data_dir), public=[])
    row = windows.encodings["raw/float64-exact"][0]  # a row as the file's values, float64
    leak = Leak(sender="cleveland", fetcher="va", data=row)

    summary, wire, nodes = federate(fedavg_setting(), tmp_path, monkeypatch, leak)

    assert summary.nodes_agree and wire.unattributed == Counter()
    sender = next(node for node in nodes if node.name == "cleveland")
    # (a window of it may be credited to another encoding that holds the same bytes)
    assert any(hit.window in row for hit in windows.find(sender.capture.plaintext.streams))
    # It went out encrypted (by the bulk channel): only the plaintext capture can see it.
    assert windows.find(sender.capture.sockets.streams) == []


KEYS = ["0x" + f"{i + 1:02x}" * 32 for i in range(3)]


async def test_a_row_a_node_sends_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = resolve_data_dir(None, os.environ)
    site = load_site("heart-disease", "cleveland", data_dir)
    windows = RowWindows(site_encodings(site, site, data_dir), public=[])
    row = windows.encodings["loaded/float32"][0]  # the first training row, features and label
    line = windows.encodings["file/text"][3]  # a line of the site's file
    wire = WireCapture()
    wire.patch(monkeypatch)
    wire.tap_sockets()
    members: dict[str, str] = {}
    policy = AnnouncementPolicy(
        federation="privacy",
        member_peer_id=lambda address: members.get(address.lower()),
        current_round=lambda: 1,
        max_blob_bytes=2**20,
        is_member_peer=lambda peer: peer in members.values(),
    )
    config = GossipConfig(fetch_timeout=5.0, max_blob_bytes=2**20)
    no_bulk = GossipConfig(fetch_timeout=5.0, max_blob_bytes=2**20, bulk_channel=False)
    services = [GossipService(c, policy, BlobStore()) for c in (config, config, no_bulk)]
    names = ("provider", "fetcher over bulk", "fetcher over a stream")
    captures = [wire.attach(s, name, lambda: 0) for s, name in zip(services, names, strict=True)]
    for key, service in zip(KEYS, services, strict=True):
        members[Account.from_key(key).address.lower()] = service.peer_id
    provider, over_bulk, over_stream = services
    sent = captures[0]

    async with trio.open_nursery() as nursery:
        for service, capture in zip(services, captures, strict=True):
            with wire.acting_as(capture):
                await nursery.start(service.run)
            wire.listening(capture, service)
        row_hash = provider.store.put(row)
        line_hash = provider.store.put(line)
        with wire.acting_as(captures[1]):
            await over_bulk.connect(provider.listen_addrs[0])
            assert await over_bulk.fetch(row_hash, [provider.peer_id]) == row
        with wire.acting_as(captures[2]):
            await over_stream.connect(provider.listen_addrs[0])
            assert await over_stream.fetch(line_hash, [provider.peer_id]) == line
        assert provider.traffic["bulk_sent"] == len(row)  # the row went over the bulk channel

        hits = windows.find(sent.plaintext.streams)
        assert any(hit.window in row for hit in hits)
        assert any(hit.window in line for hit in hits)
        # Both went out encrypted: the socket capture cannot see them, which is why the
        # plaintext capture is there.
        assert windows.find(sent.sockets.streams) == []

        # What does reach a socket in clear, the socket capture sees.
        with wire.acting_as(sent):
            port = int(over_bulk.listen_addrs[0].split("/tcp/")[1].split("/")[0])
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(row)
            await stream.aclose()
        assert any(hit.window in row for hit in windows.find(sent.sockets.streams))
        assert wire.unattributed == Counter()
        nursery.cancel_scope.cancel()
