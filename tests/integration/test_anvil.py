"""anvil as a managed chain: start, deploy, stop or crash, restart from its state file."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from anvil_kit import count_events, deploy_on, pid_alive, running_anvil, wait_until

from incentive.chain import connect_rpc
from incentive.clients import AdminClient
from testnet.anvil import AnvilChain, AnvilConfig
from testnet.errors import AnvilError

pytestmark = pytest.mark.integration

# The first account of the public test mnemonic, as anvil and Hardhat document it.
FIRST_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
FIRST_ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


def best_block_in_state_file(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["best_block_number"])
    except (OSError, ValueError, KeyError):  # not written yet, or caught mid-write
        return -1


def test_start_answers_rpc_with_funded_keys_from_the_mnemonic(tmp_path: Path) -> None:
    with running_anvil(tmp_path) as chain:
        keys = chain.private_keys(3)
        w3 = connect_rpc(chain.url, chain_id=31337)

        assert chain.url.startswith("http://127.0.0.1:")
        assert keys[0] == FIRST_KEY
        assert len(set(keys)) == 3
        assert w3.eth.get_balance(FIRST_ADDRESS) == 10_000 * 10**18
    assert (tmp_path / "anvil-state.json").is_file()
    assert (tmp_path / "anvil.log").is_file()


def test_contracts_and_members_survive_stop_and_restart(tmp_path: Path) -> None:
    # no periodic dump within the test: what survives was dumped on SIGTERM
    with running_anvil(tmp_path, state_interval=3600) as chain:
        fed = deploy_on(chain)
        hospital = AdminClient(fed.w3, fed.deployment, fed.keys[1])
        fed.admin.admit(hospital.address, "St. Anna")
        port, first_pid = chain.port, chain.pid
        assert first_pid is not None

        chain.stop()
        assert not pid_alive(first_pid)
        chain.restart()

        assert chain.port == port
        assert chain.pid != first_pid
        w3 = connect_rpc(chain.url, chain_id=31337)
        for address in (fed.deployment.registry, fed.deployment.ledger, fed.deployment.rewards):
            assert len(w3.eth.get_code(address)) > 0
        admin = AdminClient(w3, fed.deployment, fed.keys[0])
        assert admin.is_member(hospital.address)
        assert [m.name for m in admin.members()] == ["St. Anna"]
        assert count_events(fed, "MemberAdmitted") == 1


def test_state_survives_sigkill_after_the_state_interval(tmp_path: Path) -> None:
    with running_anvil(tmp_path, state_interval=1) as chain:
        fed = deploy_on(chain)
        hospital = AdminClient(fed.w3, fed.deployment, fed.keys[1])
        admitted = fed.admin.admit(hospital.address, "Charite")
        wait_until(
            lambda: best_block_in_state_file(chain.state_file) >= admitted.block_number,
            timeout=5.0,
        )
        pid = chain.pid
        assert pid is not None

        chain.kill()
        assert not pid_alive(pid)
        chain.start()

        assert fed.admin.is_member(hospital.address)
        assert fed.w3.eth.block_number >= admitted.block_number


def test_no_process_is_left_behind_even_when_the_body_fails(tmp_path: Path) -> None:
    pids = []
    with pytest.raises(RuntimeError), running_anvil(tmp_path) as chain:
        pids.append(chain.pid)
        chain.restart()
        pids.append(chain.pid)
        raise RuntimeError("test body failed")

    assert all(pid is not None and not pid_alive(pid) for pid in pids)
    assert len(set(pids)) == 2
    assert not chain.running


def test_a_taken_port_fails_with_the_log_tail(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        chain = AnvilChain(AnvilConfig(tmp_path, port=port, start_timeout=5.0))

        with pytest.raises(AnvilError) as caught:
            chain.start()

    assert not chain.running
    message = str(caught.value)
    assert "exited with code" in message and "anvil.log" in message
    assert "in use" in message.lower()
