"""No secret leaves the key files: three node processes on anvil, one killed and restarted, and
then every file of the run directory (node logs with the processes' stdout and stderr, events,
configs, state, chain) and the launcher's own output are searched for each node's Ethereum key,
identity seed and the passphrase."""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

import pytest

from node.data import resolve_data_dir
from node.keystore import load_account_key, load_identity
from node.passphrase import Passphrase
from testnet.multiproc import MultiProcessTestnet
from testnet.scenario import scenario_from_dict
from tests.key_material import KeyMaterial

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCENARIO = {
    "name": "keys-stay-secret",
    "dataset": "heart-disease",
    "rounds": 3,
    "seed": 0,
    "timeout": 240,
    "federation": {
        "update_timeout": 4.0,
        "takeover_timeout": 4.0,
        "aggregate_timeout": 60.0,
        "chain_timeout": 60.0,
    },
    "nodes": [
        {"name": "cleveland", "site": "cleveland"},
        {"name": "hungary", "site": "hungarian"},
        {"name": "va", "site": "va"},
    ],
    # a restart unlocks the key files a second time
    "faults": [{"kind": "crash", "node": "va", "round": 2, "restart_after": 0.5}],
}


def test_no_key_or_passphrase_is_written_or_logged(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    passphrase = f"keys-stay-secret {secrets.token_hex(12)}"
    out = tmp_path / "run"
    testnet = MultiProcessTestnet(
        scenario_from_dict(SCENARIO),
        out,
        resolve_data_dir(None, os.environ),
        passphrase=passphrase,
        node_verbosity=2,  # every log record the nodes make, down to DEBUG, lands in node.log
    )

    summary = testnet.up()

    assert summary["nodes_agree"] and summary["final_round"] == 3
    material = KeyMaterial()
    material.add_passphrase("the passphrase", passphrase)
    material.add_key("the admin's key", bytes.fromhex(testnet.admin_key.removeprefix("0x")))
    unlock = Passphrase(passphrase, "the test", "the test")
    for name, node in testnet.nodes.items():
        account_file, identity_file = (
            node.directory / "account.key",
            node.directory / "identity.key",
        )
        assert json.loads(account_file.read_text())["version"] == 3  # encrypted, not hex
        assert json.loads(identity_file.read_text())["format"] == "medswarm-identity"
        account = load_account_key(account_file, unlock)
        assert account == node.account_key  # the key the node signed with
        material.add_key(f"{name}'s account key", bytes.fromhex(account.removeprefix("0x")))
        identity = load_identity(identity_file, unlock)
        material.add_key(f"{name}'s identity seed", identity.private_key.to_bytes())
        starts = [
            json.loads(line)
            for line in (node.directory / "events.jsonl").read_text().splitlines()
            if '"node-started"' in line
        ]
        assert len(starts) == (2 if name == "va" else 1)
        assert all(s["passphrase_from"] == "MEDSWARM_PASSPHRASE" for s in starts)
        assert starts[0]["peer_id"] == node.peer_id

    report = material.scan(out)
    launcher = capfd.readouterr()
    findings = [
        *report.findings,
        *material.find("launcher stdout", launcher.out.encode()),
        *material.find("launcher stderr", launcher.err.encode()),
        *material.find("launcher log", caplog.text.encode()),
    ]

    assert findings == []
    scanned = {str(p.relative_to(out)) for p in report.files}
    for name in testnet.nodes:
        for file in ("node.log", "events.jsonl", "node.toml", "account.key", "identity.key"):
            assert f"nodes/{name}/{file}" in scanned
        assert (out / "nodes" / name / "node.log").stat().st_size > 10_000  # DEBUG logs
    assert {"events.jsonl", "summary.json", "chain/anvil.log", "chain/events.jsonl"} <= scanned
