"""A hospital's operator, end to end on anvil, as docs/operator-guide.md tells it:
``medswarm init`` makes the node's directory, a consortium admin runs the admission command
``init`` printed, and ``medswarm node run`` on the directory as it is (plus ``[status]``) takes
part in rounds while its status server answers. Along the way the key files open with the
passphrase and with no other, the config loads, and neither the keys nor the passphrase
appear in any file of the directory or in any command's output (debug logs included)."""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from incentive.chain import connect_rpc
from medswarm import cli
from node.config import load_config
from node.data import load_site, resolve_data_dir
from node.errors import PassphraseError
from node.keystore import load_account_key, load_identity
from node.model import build_model
from node.passphrase import Passphrase
from node.weights import state_dict_to_weights, weights_hash
from tests.integration.anvil_kit import running_anvil, wait_until
from tests.key_material import KeyMaterial

pytestmark = pytest.mark.integration

SECRET = "operator passphrase 9d41 b7e2"
WRONG = "not the operator passphrase 0000"
ROUNDS = 2


def in_process(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_private(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


def read_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def genesis_hash() -> str:
    """What every node of the federation builds from seed 0 (the node checks it)."""
    site = load_site("heart-disease", "cleveland", resolve_data_dir(None, os.environ))
    model = build_model(site.dataset, site.n_features, 0)
    return weights_hash(state_dict_to_weights(model))


def test_init_admit_and_run_with_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    secrets_dir = tmp_path / "secrets"  # apart from the node directory, as the guide says
    secrets_dir.mkdir(mode=0o700)
    secret_file = write_private(secrets_dir / "node.pass", SECRET)
    directory = tmp_path / "cleveland-node"
    with running_anvil(tmp_path / "anvil") as anvil:
        (admin_key,) = anvil.private_keys(1)
        admin_file = str(write_private(secrets_dir / "admin.key", admin_key.removeprefix("0x")))
        record = tmp_path / "deployment.json"
        rpc = ["--rpc", anvil.url]
        admin = Account.from_key(admin_key).address
        deploy = ["consortium", "deploy", *rpc, "--key-file", admin_file]
        code, _out, err = in_process(
            [*deploy, "--admins", admin, "--threshold", "1", "--record", str(record)], capsys
        )
        assert code == 0, err
        consortium = json.loads(record.read_text())["consortium"]
        code, _out, err = in_process(
            [
                *["consortium", "propose", *rpc, "--key-file", admin_file],
                *["--address", consortium, "genesis", genesis_hash()],
            ],
            capsys,
        )
        assert code == 0, err

        caplog.set_level(logging.DEBUG)
        code, made_out, made_err = in_process(
            [
                *["init", "--dir", str(directory), "--passphrase-file", str(secret_file)],
                *["--site", "cleveland", "--rpc", anvil.url, "--deployment-file", str(record)],
                *["--scrypt-n", "1024", "--json"],
            ],
            capsys,
        )

        assert code == 0, made_err
        shown = json.loads(made_out)
        assert shown["consortium"] == consortium
        config = load_config(Path(shown["config_file"]))
        assert config.node.site == "cleveland" and config.chain.url == anvil.url
        right = Passphrase(SECRET, "the test", "the test")
        key = load_account_key(directory / "account.key", right)
        identity = load_identity(directory / "identity.key", right)
        assert Account.from_key(key).address == shown["address"]
        wrong = Passphrase(WRONG, "the test", "the test")
        with pytest.raises(PassphraseError, match=r"wrong passphrase for .*account\.key"):
            load_account_key(directory / "account.key", wrong)
        with pytest.raises(PassphraseError, match=r"wrong passphrase for .*identity\.key"):
            load_identity(directory / "identity.key", wrong)

        # The account pays gas for its registration and rounds: someone funds it.
        w3 = connect_rpc(anvil.url)
        paid = w3.eth.send_transaction({"from": admin, "to": shown["address"], "value": 10**18})
        w3.eth.wait_for_transaction_receipt(paid, timeout=10)
        # The admin runs the printed command with their own key file.
        admission = shlex.split(shown["admission_command"])
        assert admission[0] == "medswarm" and "ADMIN_KEY_FILE" in admission
        admission = [admin_file if a == "ADMIN_KEY_FILE" else a for a in admission[1:]]
        code, out, err = in_process(admission, capsys)
        assert code == 0 and "ran it" in out, err

        # The operator turns on the status server and shortens the federation for the test.
        text = (directory / "node.toml").read_text()
        text = text.replace("# rounds = 20", f"rounds = {ROUNDS}")
        text = text.replace('state_dir = "state"', 'state_dir = "state"\nlinger_seconds = 60.0')
        status_table = '# [status]\n# bind = "127.0.0.1:9464"'
        text = text.replace(status_table, '[status]\nbind = "127.0.0.1:0"')
        (directory / "node.toml").write_text(text)
        assert load_config(directory / "node.toml").status.bind == "127.0.0.1:0"
        log_file = tmp_path / "node.log"
        config_file = str(directory / "node.toml")
        env = {**os.environ, "MEDSWARM_DATA": str(resolve_data_dir(None, os.environ))}
        env.pop("MEDSWARM_PASSPHRASE", None)
        with log_file.open("wb") as log:
            node = subprocess.Popen(
                [sys.executable, "-m", "medswarm", "-vv", "node", "run", "--config", config_file],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            events = directory / "events.jsonl"

            def listening() -> list[dict[str, Any]]:
                return [e for e in read_events(events) if e["event"] == "status-listening"]

            wait_until(lambda: bool(listening()) or node.poll() is not None, timeout=60)
            assert node.poll() is None, log_file.read_text()[-3000:]
            url = listening()[0]["url"]
            assert get_json(f"{url}/health")["status"] == "ok"
            wait_until(
                lambda: (
                    get_json(f"{url}/status")["completed_round"] == ROUNDS
                    or node.poll() is not None
                ),
                timeout=60,
                interval=0.2,
            )
            status = get_json(f"{url}/status")
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
                metrics = answer.read().decode()
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=20)

    rounds = [e for e in read_events(events) if e["event"] == "round"]
    assert [e["round"] for e in rounds] == list(range(1, ROUNDS + 1))
    assert status["completed_round"] == ROUNDS
    assert status["last_global_hash"] == rounds[-1]["global_hash"]
    assert (status["address"], status["peer_id"]) == (shown["address"], shown["peer_id"])
    assert status["ledger"] == "consortium" and status["pending_transactions"] == 0
    assert [m["address"] for m in status["membership"]] == [shown["address"]]
    assert f"medswarm_rounds_completed_total {ROUNDS}\n" in metrics

    material = KeyMaterial()
    material.add_passphrase("the passphrase", SECRET)
    material.add_key("the account key", bytes.fromhex(key.removeprefix("0x")))
    material.add_key("the identity seed", identity.private_key.to_bytes())
    report = material.scan(directory, log_file)
    findings = [
        *report.findings,
        *material.find("init stdout", made_out.encode()),
        *material.find("init stderr", made_err.encode()),
        *material.find("the log of init and the admin's commands", caplog.text.encode()),
    ]
    assert findings == []
    names = {str(p.relative_to(tmp_path)) for p in report.files}
    assert {"node.log", "cleveland-node/events.jsonl", "cleveland-node/node.toml"} <= names
    assert "created a new Ethereum account key" in caplog.text  # the log was on
    assert "DEBUG" in log_file.read_text()  # and the node's, down to debug
