"""A private network of Linux network namespaces, one per node, so links can be cut for real.

Layout (all names carry a per-run prefix, all addresses are in one private /24)::

    root namespace            hub namespace                node namespaces
    launcher, anvil   <veth>  bridge  <veth> ... <veth>   one node process each
    10.213.N.1                                             10.213.N.10, .11, ...

The launcher and anvil stay in the root namespace on the hub link's address, so every node
reaches the chain. A partition is made inside the node namespaces: each node gets an
``unreachable`` route to every node on the other side, so packets between the sides are
dropped at the sender (new connections fail with "no route to host", open ones stall) while
the chain stays reachable. Healing deletes those routes. ``iptables`` and ``netem`` are not
needed, only iproute2 and the right to create namespaces (root or CAP_NET_ADMIN).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from testnet.errors import TestnetError

log = logging.getLogger(__name__)

SUBNET_PREFIX = "10.213"
FIRST_NODE_HOST = 10
IP_TIMEOUT_SECONDS = 10.0


def namespaces_available() -> str | None:
    """None when this process may create network namespaces, else the reason it may not."""
    probe = f"msw{os.getpid()}probe"
    try:
        _ip("netns", "add", probe)
    except TestnetError as exc:
        return str(exc)
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class NetworkLab:
    """Namespaces, links and addresses for the nodes of one testnet run."""

    nodes: Sequence[str]
    subnet: int = 0  # the third octet; chosen by create() among the unused ones
    _created: list[str] = field(default_factory=list)
    _blocked: dict[str, list[str]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"msw{self.subnet}"

    @property
    def gateway(self) -> str:
        """The root namespace's address on the lab network (anvil listens here)."""
        return f"{SUBNET_PREFIX}.{self.subnet}.1"

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this lab created (for ``testnet down``)."""
        return list(self._created)

    def address(self, node: str) -> str:
        """The address of ``node`` inside its namespace."""
        return f"{SUBNET_PREFIX}.{self.subnet}.{FIRST_NODE_HOST + self.nodes.index(node)}"

    def namespace(self, node: str) -> str:
        return f"{self.prefix}n{self.nodes.index(node)}"

    def command(self, node: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the namespace of ``node``."""
        return ["ip", "netns", "exec", self.namespace(node), *argv]

    def create(self) -> None:
        """Build the hub, the root link and one namespace per node; undo all on failure."""
        if len(self.nodes) > 200:
            raise TestnetError(f"a network lab holds at most 200 nodes, got {len(self.nodes)}")
        self.subnet = _free_subnet()
        hub = f"{self.prefix}hub"
        try:
            self._add_namespace(hub)
            _ip("-n", hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", hub, "link", "set", "br0", "up")
            root_end = f"{self.prefix}r"
            self._link(root_end, None, hub)
            _ip("addr", "add", f"{self.gateway}/24", "dev", root_end)
            _ip("link", "set", root_end, "up")
            for index, node in enumerate(self.nodes):
                namespace = self.namespace(node)
                self._add_namespace(namespace)
                _ip("-n", namespace, "link", "set", "lo", "up")
                end = f"{self.prefix}n{index}e"
                self._link(end, namespace, hub)
                _ip("-n", namespace, "addr", "add", f"{self.address(node)}/24", "dev", end)
                _ip("-n", namespace, "link", "set", end, "up")
        except TestnetError:
            self.destroy()
            raise
        log.info(
            "network lab %s: %d node namespaces on %s/24",
            self.prefix,
            len(self.nodes),
            self.gateway,
        )

    def partition(self, sides: Sequence[Iterable[str]]) -> None:
        """Cut every path between nodes of different ``sides`` (each node on at most one)."""
        groups = [list(side) for side in sides]
        for i, side in enumerate(groups):
            others = [n for j, other in enumerate(groups) if j != i for n in other]
            for node in side:
                for other in others:
                    target = f"{self.address(other)}/32"
                    _ip("-n", self.namespace(node), "route", "add", "unreachable", target)
                    self._blocked.setdefault(node, []).append(target)

    def heal(self) -> None:
        """Remove every cut made by :meth:`partition`."""
        for node, targets in self._blocked.items():
            for target in targets:
                _ip("-n", self.namespace(node), "route", "del", "unreachable", target, check=False)
        self._blocked.clear()

    def destroy(self) -> None:
        """Delete every namespace (and with them their links) this lab created."""
        for namespace in reversed(self._created):
            _ip("netns", "del", namespace, check=False)
        _ip("link", "del", f"{self.prefix}r", check=False)
        self._created.clear()

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)

    def _link(self, end: str, namespace: str | None, hub: str) -> None:
        """A veth pair: ``end`` in ``namespace`` (None: root), its peer on the hub bridge."""
        peer = f"{end}p"
        _ip("link", "add", end, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", hub)
        _ip("-n", hub, "link", "set", peer, "master", "br0")
        _ip("-n", hub, "link", "set", peer, "up")
        if namespace is not None:
            _ip("link", "set", end, "netns", namespace)


def _free_subnet() -> int:
    """A third octet whose namespaces and root link are not in use (several runs at once)."""
    result = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    taken = result.stdout + namespaces.stdout
    start = os.getpid() % 128
    for offset in range(128):
        subnet = 64 + (start + offset) % 128
        if f"msw{subnet}r" not in taken and f"msw{subnet}hub" not in taken:
            return subnet
    raise TestnetError("no free network lab subnet in 10.213.64-191.0/24: run 'testnet down'")


def destroy_namespaces(names: Iterable[str]) -> list[str]:
    """Delete the named namespaces (``testnet down`` after a launcher died); the deleted ones."""
    deleted = []
    for name in names:
        if _ip("netns", "del", name, check=False):
            deleted.append(name)
    return deleted


def _ip(*args: str, check: bool = True) -> bool:
    try:
        result = subprocess.run(
            ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_SECONDS
        )
    except FileNotFoundError as exc:
        raise TestnetError(
            "the 'ip' command (iproute2) is not installed; network namespaces need it "
            "(Debian: apt-get install iproute2)"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise TestnetError(
            f"'ip {' '.join(args)}' did not finish in {IP_TIMEOUT_SECONDS}s"
        ) from exc
    if result.returncode != 0 and check:
        raise TestnetError(
            f"'ip {' '.join(args)}' failed: {result.stderr.strip() or result.returncode}; "
            "network namespaces need root or CAP_NET_ADMIN"
        )
    return result.returncode == 0
