"""Everything a node sends, captured on its sockets, before its ciphers and on its way to the
chain, for tests on real libp2p hosts.

- **sockets**: every byte a node writes to a TCP socket: its libp2p connections (Noise) and its
  bulk-channel links (ChaCha20-Poly1305) alike. trio's seam for this,
  ``trio.socket.set_custom_socket_factory``, makes every socket the run creates a
  :class:`TappedSocket` (and every socket a listening one accepts), so no byte sent through
  trio escapes, whichever code opened the socket.
- **plaintext**: what the node hands to those ciphers: every write to a libp2p secure session
  (``SecureSession.write``: the Yamux frames that carry GossipSub's RPCs and every stream
  (blob protocols, bulk handshakes), and the muxer's negotiation), and every record and
  frame the bulk channel seals (``Sealer.seal``, ``FrameCipher.seal_into``). Not captured as
  plaintext: the Noise handshake payload (the host's public key and its signature) and the bulk
  hello (a session id and a tag); both are in the socket capture.
- **chain**: every transaction the node signs and submits (the raw signed bytes given to
  ``TransactionSender._submit``). With the in-process EVM these never reach a socket; on a real
  deployment they go to the chain's RPC endpoint.

Who sent it: a libp2p session belongs to its local peer id, a transaction to its signer. A
socket belongs to the node whose code created it, and a bulk record or frame to the node whose
task sealed it: :data:`SENDER` is set while a node's coroutines run
(:meth:`WireCapture.acting_as`) and trio hands it on to every task and worker thread they start.
Connections accepted by py-libp2p's listener, which runs as a trio system task outside any
node's context, belong to the node listening on that port. Bytes that belong to no node are
counted in :attr:`WireCapture.unattributed`: a test should demand none, or its capture has a
hole.
"""

from __future__ import annotations

import socket as stdlib_socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from libp2p.security.secure_session import SecureSession

from gossip.bulk_codec import FrameCipher, Sealer
from gossip.service import GossipService
from incentive.tx import TransactionSender


class Capture:
    """What one node sent at one depth: each connection's (or cipher's) bytes in order, and
    how many bytes went out in each round."""

    def __init__(self, round_of: Callable[[], int]) -> None:
        self.streams: list[bytearray] = []
        self.per_round: Counter[int] = Counter()
        self._round_of = round_of
        self._lock = threading.Lock()  # bulk frames are sealed in worker threads

    def open(self) -> bytearray:
        stream = bytearray()
        with self._lock:
            self.streams.append(stream)
        return stream

    def record(self, stream: bytearray, data: bytes | memoryview) -> None:
        with self._lock:
            stream += data
            self.per_round[self._round_of()] += len(data)

    @property
    def total(self) -> int:
        return sum(self.per_round.values())


@dataclass
class NodeCapture:
    """A node's captures."""

    name: str
    peer_id: str
    round_of: Callable[[], int]
    sockets: Capture = field(init=False)
    plaintext: Capture = field(init=False)
    chain: Capture = field(init=False)

    def __post_init__(self) -> None:
        self.sockets = Capture(self.round_of)
        self.plaintext = Capture(self.round_of)
        self.chain = Capture(self.round_of)


SENDER: ContextVar[NodeCapture | None] = ContextVar("wire_sender", default=None)


class TappedSocket(trio._socket._SocketType):  # type: ignore[misc,name-defined]
    """A trio socket that reports what it sends (trio's socket class; the factory seam
    needs an instance of it, see :func:`trio.socket.set_custom_socket_factory`)."""

    def __init__(self, sock: stdlib_socket.socket, wire: WireCapture, owner: NodeCapture | None):
        super().__init__(sock)
        self._wire = wire
        self.owner = owner
        self.stream: bytearray | None = None

    async def send(self, data: Any, flags: int = 0) -> int:
        sent: int = await super().send(data, flags)
        self._wire.socket_sent(self, memoryview(data)[:sent])
        return sent

    async def sendto(self, *args: Any) -> int:
        raise AssertionError("the capture covers send() only, which is all TCP streams use")

    async def sendmsg(self, *args: Any) -> int:
        raise AssertionError("the capture covers send() only, which is all TCP streams use")

    async def accept(self) -> tuple[TappedSocket, Any]:
        sock, address = await super().accept()
        accepted = stdlib_socket.socket(fileno=sock.detach())
        return TappedSocket(accepted, self._wire, self.owner), address


class _TappingFactory(trio.abc.SocketFactory):
    def __init__(self, wire: WireCapture) -> None:
        self._wire = wire

    def socket(
        self, family: int = stdlib_socket.AF_INET, type: int = stdlib_socket.SOCK_STREAM, proto=0
    ) -> TappedSocket:
        return TappedSocket(stdlib_socket.socket(family, type, proto), self._wire, SENDER.get())


class WireCapture:
    """The captures of every node in one trio run (see the module docstring)."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeCapture] = {}  # by libp2p peer id
        self.unattributed: Counter[str] = Counter()  # bytes no node owns, by depth
        self._ports: dict[int, NodeCapture] = {}  # libp2p listening ports
        self._accounts: dict[str, NodeCapture] = {}  # by lowercase Ethereum address
        self._streams: dict[int, tuple[object, bytearray]] = {}  # plaintext per session/cipher
        self._lock = threading.Lock()

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Tap the plaintext boundaries (for the rest of the test)."""
        wire = self
        write = SecureSession.write
        seal = Sealer.seal
        seal_into = FrameCipher.seal_into
        submit = TransactionSender._submit

        async def write_tapped(session: SecureSession, data: bytes) -> None:
            owner = wire.nodes.get(session.local_peer.to_base58())
            wire.plaintext_sent(session, owner, data, "libp2p")
            await write(session, data)

        def seal_tapped(sealer: Sealer, plaintext: bytes, associated: bytes) -> bytes:
            wire.plaintext_sent(sealer, SENDER.get(), plaintext, "bulk")
            return seal(sealer, plaintext, associated)

        def seal_into_tapped(cipher: FrameCipher, frame: Any, plaintext: Any, out: Any) -> int:
            wire.plaintext_sent(cipher, SENDER.get(), plaintext, "bulk")
            return seal_into(cipher, frame, plaintext, out)

        def submit_tapped(sender: TransactionSender, signed: Any, what: str) -> None:
            owner = wire._accounts.get(sender.address.lower())
            if owner is not None:  # else the consortium's admin, not a node
                owner.chain.record(owner.chain.open(), bytes(signed.raw_transaction))
            submit(sender, signed, what)

        monkeypatch.setattr(SecureSession, "write", write_tapped)
        monkeypatch.setattr(TransactionSender, "_submit", submit_tapped)
        monkeypatch.setattr(Sealer, "seal", seal_tapped)
        monkeypatch.setattr(FrameCipher, "seal_into", seal_into_tapped)

    def tap_sockets(self) -> None:
        """Make every socket of the current trio run a :class:`TappedSocket` (call inside the
        run, before the nodes start)."""
        trio.socket.set_custom_socket_factory(_TappingFactory(self))

    def attach(
        self,
        gossip: GossipService,
        name: str,
        round_of: Callable[[], int],
        account: str | None = None,
    ) -> NodeCapture:
        """Start capturing what ``gossip``'s node sends (and ``account`` submits to the
        chain)."""
        capture = NodeCapture(name, gossip.peer_id, round_of)
        self.nodes[gossip.peer_id] = capture
        if account is not None:
            self._accounts[account.lower()] = capture
        return capture

    def listening(self, capture: NodeCapture, gossip: GossipService) -> None:
        """Connections accepted on ``gossip``'s libp2p port are ``capture``'s (call once it
        runs)."""
        for address in gossip.listen_addrs:
            self._ports[int(address.split("/tcp/")[1].split("/")[0])] = capture

    @contextmanager
    def acting_as(self, capture: NodeCapture) -> Iterator[None]:
        """Sockets created and bulk records sealed in this block, and in the tasks and threads
        it starts, are ``capture``'s node's."""
        token = SENDER.set(capture)
        try:
            yield
        finally:
            SENDER.reset(token)

    def socket_sent(self, sock: TappedSocket, data: memoryview) -> None:
        if sock.owner is None:
            port = sock.getsockname()[1]
            sock.owner = self._ports.get(port)
        if sock.owner is None:
            self.unattributed["sockets"] += len(data)
            return
        if sock.stream is None:
            sock.stream = sock.owner.sockets.open()
        sock.owner.sockets.record(sock.stream, data)

    def plaintext_sent(
        self, source: object, owner: NodeCapture | None, data: Any, channel: str
    ) -> None:
        if owner is None:
            self.unattributed[f"{channel} plaintext"] += len(memoryview(data))
            return
        with self._lock:
            known = self._streams.get(id(source))
            if known is None or known[0] is not source:
                known = (source, owner.plaintext.open())
                self._streams[id(source)] = known
        owner.plaintext.record(known[1], memoryview(data))
