"""``medswarm consortium`` against anvil: deploy, govern 2-of-3, register, fund, pay out."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from eth_account import Account

from incentive.chain import connect_rpc
from incentive.consortium import ConsortiumClient, sign_and_finalize
from incentive.deployment import ConsortiumDeployment
from incentive.round_commit import ClusterCommit, Record
from medswarm import cli
from node.keystore import write_account_key
from node.passphrase import Passphrase
from tests.integration.anvil_kit import running_anvil

CLUSTERS = (0, 0, 1, 1)


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


pytestmark = pytest.mark.integration


ADMIN_PASSPHRASE = "second admin's passphrase"
HOSPITAL_PASSPHRASE = "hospital 0's passphrase"


def key_file(directory: Path, name: str, key: str) -> str:
    """A plain-hex key file, as medswarm wrote before it encrypted keys."""
    path = directory / f"{name}.key"
    path.write_text(key.removeprefix("0x") + "\n")
    path.chmod(0o600)
    return str(path)


def keystore_file(directory: Path, name: str, key: str, passphrase: str) -> str:
    """A v3 keystore (light scrypt cost: a test key)."""
    path = directory / f"{name}.json"
    write_account_key(path, key, Passphrase(passphrase, "test", "test"), scrypt_n=1024)
    return str(path)


def anvil_chain_id(url: str) -> int:
    return int(connect_rpc(url).eth.chain_id)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_operators_run_a_consortium_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_anvil(tmp_path / "anvil") as anvil:
        keys = anvil.private_keys(8)
        accounts = [Account.from_key(k).address for k in keys]
        files = [key_file(tmp_path, f"k{i}", k) for i, k in enumerate(keys)]
        # the second admin's key is a keystore unlocked by MEDSWARM_PASSPHRASE, hospital 0's
        # one unlocked by --passphrase-file
        files[1] = keystore_file(tmp_path, "k1", keys[1], ADMIN_PASSPHRASE)
        files[3] = keystore_file(tmp_path, "k3", keys[3], HOSPITAL_PASSPHRASE)
        hospital_passphrase = tmp_path / "hospital.pass"
        hospital_passphrase.write_text(HOSPITAL_PASSPHRASE + "\n")
        hospital_passphrase.chmod(0o600)
        monkeypatch.setenv("MEDSWARM_PASSPHRASE", ADMIN_PASSPHRASE)
        rpc = ["--rpc", anvil.url]
        admins = ["--admins", *accounts[:3], "--threshold", "2"]
        record = tmp_path / "deployment.json"
        deploy = ["consortium", "deploy", *rpc, "--key-file", files[0], *admins]
        code, out, _ = run([*deploy, "--record", str(record), "--json"], capsys)
        assert code == 0
        deployed = json.loads(out)
        # the record a node reads as chain.deployment_file
        written = ConsortiumDeployment.from_json(record.read_text())
        assert (written.consortium, written.rewards) == (
            deployed["consortium"],
            deployed["rewards"],
        )
        assert written.chain_id == anvil_chain_id(anvil.url)
        at = ["--address", deployed["consortium"]]

        def govern(*action: str) -> None:
            code, out, err = run(
                ["consortium", "propose", *rpc, "--key-file", files[0], *at, *action], capsys
            )
            assert code == 0, err
            pid = out.split(":")[0].removeprefix("proposal ")
            assert "ran it" not in out  # one of two approvals
            code, out, err = run(
                ["consortium", "approve", *rpc, "--key-file", files[1], *at, pid], capsys
            )
            assert code == 0 and "Executed" in out, err

        for i, cluster in enumerate(CLUSTERS):
            govern("admit", accounts[3 + i], f"H{i}", str(cluster))
        govern("genesis", digest("genesis").hex())
        peer = ["12D3KooWH0", "/ip4/127.0.0.1/tcp/4001"]
        register = ["consortium", "register", *rpc, "--key-file", files[3], *at, *peer]
        code, _, err = run(register, capsys)
        assert code == 2 and f"wrong passphrase for {files[3]}" in err
        assert "check MEDSWARM_PASSPHRASE or --passphrase-file" in err
        assert HOSPITAL_PASSPHRASE not in err and ADMIN_PASSPHRASE not in err
        code, _, err = run([*register, "--passphrase-file", str(hospital_passphrase)], capsys)
        assert code == 0, err

        # a round played with the hospitals' keys, then the pool pays the epoch out
        w3 = connect_rpc(anvil.url)
        hospital = ConsortiumClient(w3, deployed["consortium"], keys[3])
        commits = [
            ClusterCommit(
                c,
                2 * c,
                digest(f"aggregate {c}"),
                tuple(Record(i, digest(f"u{i}"), 10, 10 * (i + 1)) for i in (2 * c, 2 * c + 1)),
            )
            for c in (0, 1)
        ]
        members = {i: accounts[3 + i] for i in range(4)}
        signers = {i: keys[3 + i] for i in range(4)}
        genesis = digest("genesis")
        sign_and_finalize(hospital, 1, genesis, digest("global 1"), commits, signers, members)
        pool = ["--rewards", deployed["rewards"]]
        assert (
            run(["consortium", "fund", *rpc, "--key-file", files[7], *pool, "1000"], capsys)[0] == 0
        )
        assert (
            run(["consortium", "distribute", *rpc, "--key-file", files[7], *pool], capsys)[0] == 0
        )
        code, out, _ = run(["consortium", "status", *rpc, *at, *pool, "--json"], capsys)
        assert code == 0
        status = json.loads(out)
        assert status["last_finalized_round"] == 1 and status["quorum"] == 3
        assert [m["credit"] for m in status["members"]] == [100, 200, 300, 400]
        assert status["members"][0]["peer_id"] == "12D3KooWH0"
        assert all(p["executed"] for p in status["proposals"])
        assert [p["action"] for p in status["proposals"]] == ["admit"] * 4 + ["genesis"]
        assert run(["consortium", "withdraw", *rpc, "--key-file", files[6], *pool], capsys)[0] == 0
        code, out, _ = run(
            ["consortium", "pay", *rpc, "--key-file", files[7], *pool, "ab" * 32, "500"], capsys
        )
        assert code == 0 and "ModelUsed" in out  # nothing accrued since: no epoch closes
        code, _, err = run(
            ["consortium", "pay", *rpc, "--key-file", files[7], *pool, "abc", "1"], capsys
        )
        assert code == 2 and "64 hex digits" in err

        # mistakes get a clear error and exit 2
        code, _, err = run(
            ["consortium", "approve", *rpc, "--key-file", files[5], *at, "0"], capsys
        )
        assert code == 2 and "NotAdmin" in err
        code, _, err = run(
            ["consortium", "propose", *rpc, "--key-file", files[0], *at, "quorum", "2"], capsys
        )
        assert code == 2 and "quorum takes NUMERATOR DENOMINATOR" in err
        code, _, err = run(
            ["consortium", "fund", *rpc, "--key-file", str(tmp_path / "missing.key"), *pool, "1"],
            capsys,
        )
        assert code == 2 and "does not exist" in err
        monkeypatch.delenv("MEDSWARM_PASSPHRASE")
        code, _, err = run(["consortium", "cancel", *rpc, "--key-file", files[1], *at, "0"], capsys)
        assert code == 2 and f"{files[1]} holds an encrypted Ethereum account key" in err
        assert "no passphrase was given: set MEDSWARM_PASSPHRASE or --passphrase-file" in err
