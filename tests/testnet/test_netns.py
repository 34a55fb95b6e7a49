"""The network lab: real namespaces and veth links; a partition cuts node-to-node paths only."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from testnet.netns import NetworkLab, namespaces_available

pytestmark = pytest.mark.integration

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("connected")
except OSError as exc:
    print(type(exc).__name__, exc.errno)
"""

SERVE = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
server.settimeout(20)
print("listening", flush=True)
while True:
    try:
        server.accept()[0].close()
    except TimeoutError:
        break
"""


@pytest.fixture
def lab() -> Iterator[NetworkLab]:
    problem = namespaces_available()
    if problem is not None:
        pytest.skip(f"network namespaces unavailable: {problem}")
    lab = NetworkLab(["a", "b", "c"])
    lab.create()
    yield lab
    lab.destroy()


def connect(lab: NetworkLab, source: str | None, target: str, port: int) -> str:
    argv = [sys.executable, "-c", CONNECT, target, str(port)]
    if source is not None:
        argv = lab.command(source, argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()


def test_a_partition_cuts_between_sides_and_healing_restores(lab: NetworkLab) -> None:
    server = subprocess.Popen(
        lab.command("b", [sys.executable, "-c", SERVE, lab.address("b"), "7001"]),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        assert connect(lab, "a", lab.address("b"), 7001) == "connected"
        assert connect(lab, None, lab.address("b"), 7001) == "connected"  # the launcher's side

        lab.partition([["a"], ["b", "c"]])
        assert connect(lab, "a", lab.address("b"), 7001) == "OSError 113"  # no route to host
        assert connect(lab, "c", lab.address("b"), 7001) == "connected"  # same side
        assert connect(lab, None, lab.address("b"), 7001) == "connected"  # chain side stays

        lab.heal()
        assert connect(lab, "a", lab.address("b"), 7001) == "connected"
    finally:
        server.kill()
        server.wait()


def test_destroy_leaves_no_namespace_behind(lab: NetworkLab) -> None:
    created = set(lab.namespaces)
    assert len(created) == 4  # the hub and three nodes
    lab.destroy()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not created & {line.split()[0] for line in listed.splitlines() if line.strip()}
