"""anvil settings, binary lookup and key derivation, without starting anvil."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from testnet.anvil import AnvilChain, AnvilConfig, derive_private_keys, find_anvil, free_port
from testnet.errors import AnvilError, AnvilNotFound

# Published keys of the first two accounts of anvil's default test mnemonic.
MNEMONIC = "test test test test test test test test test test test junk"
KEYS = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
]


def test_keys_follow_the_standard_derivation_path() -> None:
    assert derive_private_keys(MNEMONIC, 2) == KEYS


def test_a_missing_binary_says_to_run_make_setup(tmp_path: Path) -> None:
    with pytest.raises(AnvilNotFound, match="make setup"):
        find_anvil(tmp_path / "no-anvil-here")


def test_start_with_a_missing_binary_leaves_nothing_running(tmp_path: Path) -> None:
    chain = AnvilChain(AnvilConfig(tmp_path, binary=tmp_path / "absent"))

    with pytest.raises(AnvilNotFound):
        chain.start()

    assert not chain.running and chain.pid is None


def test_a_non_executable_binary_says_to_chmod(tmp_path: Path) -> None:
    binary = tmp_path / "anvil"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o644)

    with pytest.raises(AnvilNotFound, match="chmod"):
        find_anvil(binary)


@pytest.mark.parametrize(
    "options",
    [{"port": 0}, {"port": 70000}, {"accounts": 0}, {"state_interval": 0}, {"start_timeout": 0}],
)
def test_invalid_settings_are_refused(tmp_path: Path, options: dict[str, int]) -> None:
    with pytest.raises(AnvilError):
        AnvilConfig(tmp_path, **options)  # type: ignore[arg-type]


def test_url_before_start_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AnvilError, match="start"):
        _ = AnvilChain(AnvilConfig(tmp_path)).url


def test_listen_ports_come_from_below_the_ephemeral_range_and_never_twice() -> None:
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(10_000 <= p < first_ephemeral for p in ports)
    # an outgoing connection takes its local port from the ephemeral range, never from ours
    with socket.socket() as server, socket.socket() as client:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client.connect(server.getsockname())
        assert client.getsockname()[1] >= first_ephemeral
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # still free
