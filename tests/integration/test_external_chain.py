"""A node configured as on a real consortium chain (docs/deployment-guide.md), on anvil: an
external JSON-RPC URL, an explicit ``chain.chain_id`` and the contracts' addresses from the
deployment record. ``medswarm node run`` refuses, with the setting to change, an unreachable
URL, a chain id that is not the record's or the RPC node's, a record naming an address where
nothing is deployed, an account not yet admitted, and a clock behind the chain's; set up
right, the node registers and finishes a round, and ``medswarm audit serve --rpc URL
--deployment-file`` audits that round through the same record.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import time
from pathlib import Path

import pytest
from eth_account import Account

from incentive.audit_serve_cli import audit_loader
from incentive.chain import connect_rpc
from incentive.errors import AuditError, ChainError
from medswarm import cli
from node.config import load_config
from testnet.anvil import ANVIL_CHAIN_ID
from tests.integration.anvil_kit import running_anvil
from tests.integration.test_operator_flow import genesis_hash, read_events, write_private

pytestmark = pytest.mark.integration

SECRET = "external chain passphrase 51c0"


def run_node(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli.main(["node", "run", "--config", str(config)])
    return code, capsys.readouterr().err


def variant(directory: Path, name: str, chain: dict[str, object]) -> Path:
    """A copy of the node's config with ``[chain]`` keys replaced."""
    text = (directory / "node.toml").read_text()
    head, _, rest = text.partition("[chain]\n")
    _, _, tail = rest.partition("\n[network]")
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in chain.items())
    path = directory / f"{name}.toml"
    path.write_text(f"{head}[chain]\n{lines}\n[network]{tail}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_node_on_an_external_chain_checks_it_before_taking_part(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file = write_private(tmp_path / "node.pass", SECRET)
    directory = tmp_path / "node"
    with running_anvil(tmp_path / "anvil") as anvil:
        (admin_key,) = anvil.private_keys(1)
        admin_file = str(write_private(tmp_path / "admin.key", admin_key.removeprefix("0x")))
        record = tmp_path / "deployment.json"
        rpc = ["--rpc", anvil.url]
        admin = Account.from_key(admin_key).address
        deploy = ["consortium", "deploy", *rpc, "--key-file", admin_file, "--admins", admin]
        assert cli.main([*deploy, "--threshold", "1", "--record", str(record)]) == 0
        consortium = json.loads(record.read_text())["consortium"]
        propose = ["consortium", "propose", *rpc, "--key-file", admin_file, "--address"]
        assert cli.main([*propose, consortium, "genesis", genesis_hash()]) == 0
        capsys.readouterr()
        init = ["init", "--dir", str(directory), "--passphrase-file", str(secret_file)]
        init += ["--site", "cleveland", "--rpc", anvil.url, "--deployment-file", str(record)]
        assert cli.main([*init, "--scrypt-n", "1024", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        text = (directory / "node.toml").read_text().replace("# rounds = 20", "rounds = 1")
        text = text.replace('state_dir = "state"', 'state_dir = "state"\nlinger_seconds = 0.0')
        (directory / "node.toml").write_text(text)
        chain = {"url": anvil.url, "deployment_file": str(record), "chain_id": ANVIL_CHAIN_ID}
        good = variant(directory, "good", chain)
        assert load_config(good).chain.chain_id == ANVIL_CHAIN_ID

        wrong_record = tmp_path / "other-chain.json"
        wrong_record.write_text(record.read_text().replace(f": {ANVIL_CHAIN_ID}", ": 1337"))
        no_code = tmp_path / "no-code.json"
        no_code.write_text(record.read_text().replace(consortium, admin))
        unreachable = f"http://127.0.0.1:{free_port()}"
        refusals = {
            "unreachable": (
                {**chain, "url": unreachable},
                f"chain.url = '{unreachable}': no Ethereum JSON-RPC node answers there",
            ),
            "chain-id": (
                {**chain, "chain_id": 1337},
                "chain.chain_id = 1337, but the "
                f"deployment record {record} is for chain {ANVIL_CHAIN_ID}",
            ),
            "rpc-chain": (
                {**chain, "chain_id": 0, "deployment_file": str(wrong_record)},
                f"chain.url = '{anvil.url}' serves chain id {ANVIL_CHAIN_ID}, but "
                f"the federation's chain (deployment record {wrong_record}) is 1337",
            ),
            "no-code": (
                {**chain, "deployment_file": str(no_code)},
                f"no contract at {admin} on chain {ANVIL_CHAIN_ID}",
            ),
            "not-admitted": (
                chain,
                f"account {shown['address']} is not a member of the "
                "federation: ask the consortium admin to admit it first",
            ),
        }
        seen = {}
        for name, (settings, _) in refusals.items():
            seen[name] = run_node(variant(directory, name, settings), capsys)

        w3 = connect_rpc(anvil.url)
        paid = w3.eth.send_transaction({"from": admin, "to": shown["address"], "value": 10**18})
        w3.eth.wait_for_transaction_receipt(paid, timeout=10)
        admission = shlex.split(shown["admission_command"])[1:]
        assert cli.main([admin_file if a == "ADMIN_KEY_FILE" else a for a in admission]) == 0
        ran = run_node(good, capsys)
        # an auditor's dashboard reads the same chain through the same record
        serve = ["audit", "serve", "--rpc", anvil.url, "--bind", "127.0.0.1:0"]
        audited = audit_loader(
            cli.build_parser().parse_args([*serve, "--deployment-file", str(record)])
        )()
        with pytest.raises(ChainError, match=f"serves chain id {ANVIL_CHAIN_ID}, not 1337"):
            audit_loader(
                cli.build_parser().parse_args([*serve, "--deployment-file", str(wrong_record)])
            )
        no_contract = audit_loader(cli.build_parser().parse_args([*serve, "--address", admin]))
        with pytest.raises(AuditError, match=f"no contract at {admin} on chain {ANVIL_CHAIN_ID}"):
            no_contract()

        # anvil mines the next block an hour ahead of this machine's clock
        w3.provider.make_request("evm_setNextBlockTimestamp", [int(time.time()) + 3600])
        w3.provider.make_request("evm_mine", [])
        skewed = run_node(good, capsys)
        tolerant = run_node(variant(directory, "tolerant", {**chain, "max_clock_skew": 0}), capsys)

    for name, (_, message) in refusals.items():
        code, err = seen[name]
        assert (code, message in err) == (2, True), (name, err)
    assert ran[0] == 0, ran[1]
    events = read_events(directory / "events.jsonl")
    rounds = [e for e in events if e["event"] == "round"]
    assert [e["round"] for e in rounds] == [1]
    assert audited.ok and audited.chain_id == ANVIL_CHAIN_ID
    assert [r.global_hash for r in audited.rounds] == [rounds[0]["global_hash"]]
    assert [m.account for m in audited.members] == [shown["address"]]
    # an hour ahead, less the seconds between setting the stamp and the check
    behind = re.search(r"this machine's clock is (\d+) s behind the chain's", skewed[1])
    assert skewed[0] == 2 and behind is not None and 3500 <= int(behind[1]) <= 3600, skewed[1]
    assert "s behind the chain's: its latest block" in skewed[1]
    assert "chain.max_clock_skew = 60 s); set the clock right" in skewed[1]
    assert tolerant[0] == 0, tolerant[1]
