"""``medswarm init`` as an operator runs it, then ``medswarm node run`` on what it made: the key
files open with the passphrase and with no other, the config loads, and neither the keys nor
the passphrase appear in any file of the directory or in either command's output (debug
logs included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_config
from node.data import resolve_data_dir
from node.errors import PassphraseError
from node.keystore import load_account_key, load_identity
from node.passphrase import Passphrase
from tests.key_material import KeyMaterial

pytestmark = pytest.mark.integration

SECRET = "operator passphrase 9d41 b7e2"
WRONG = "not the operator passphrase 0000"


def medswarm(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MEDSWARM_DATA": str(resolve_data_dir(None, os.environ))}
    env.pop("MEDSWARM_PASSPHRASE", None)
    return subprocess.run(
        [sys.executable, "-m", "medswarm", "-vv", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def write_secret(path: Path, secret: str) -> Path:
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return path


def test_init_then_node_run_keeps_every_secret_in_the_key_files(tmp_path: Path) -> None:
    secrets_dir = tmp_path / "secrets"  # apart from the node directory, as the guide says
    secrets_dir.mkdir(mode=0o700)
    secret_file = write_secret(secrets_dir / "node.pass", SECRET)
    directory = tmp_path / "cleveland-node"

    made = medswarm(
        "init",
        "--dir",
        str(directory),
        "--passphrase-file",
        str(secret_file),
        "--site",
        "cleveland",
        "--scrypt-n",
        "1024",
        "--json",
    )

    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    config = load_config(Path(shown["config_file"]))
    assert config.node.site == "cleveland" and config.node.scrypt_n == 1024
    right = Passphrase(SECRET, "the test", "the test")
    key = load_account_key(directory / "account.key", right)
    identity = load_identity(directory / "identity.key", right)
    with pytest.raises(PassphraseError, match=r"wrong passphrase for .*account\.key"):
        load_account_key(directory / "account.key", Passphrase(WRONG, "the test", "the test"))
    with pytest.raises(PassphraseError, match=r"wrong passphrase for .*identity\.key"):
        load_identity(directory / "identity.key", Passphrase(WRONG, "the test", "the test"))

    # The node takes the directory as it is: the keys open and it stops only for want of a
    # deployment record (there is no federation here).
    started = medswarm("node", "run", "--config", shown["config_file"])
    assert started.returncode == 2
    assert "error: deployment record" in started.stderr and "not found" in started.stderr
    # With another passphrase in the file it names the key file and where the passphrase
    # came from.
    write_secret(secret_file, WRONG)
    refused = medswarm("node", "run", "--config", shown["config_file"])
    assert refused.returncode == 2
    assert (
        f"error: wrong passphrase for {directory}/account.key (it came from "
        f"node.passphrase_file {secret_file}), or the file was altered: check "
        "MEDSWARM_PASSPHRASE or node.passphrase_file\n"
    ) in refused.stderr

    material = KeyMaterial()
    material.add_passphrase("the passphrase", SECRET)
    material.add_key("the account key", bytes.fromhex(key.removeprefix("0x")))
    material.add_key("the identity seed", identity.private_key.to_bytes())
    report = material.scan(directory)
    findings = list(report.findings)
    for name, run in (("init", made), ("node run", started), ("node run, wrong", refused)):
        findings += material.find(f"{name} stdout", run.stdout.encode())
        findings += material.find(f"{name} stderr", run.stderr.encode())
    assert findings == []
    assert {p.name for p in report.files} == {"node.toml", "account.key", "identity.key"}
    assert "created a new Ethereum account key" in made.stderr  # the debug log was on
