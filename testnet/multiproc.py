"""A testnet of separate node processes on anvil, with faults injected on a timeline.

``medswarm testnet up --scenario FILE`` lands here. The launcher is a plain supervisor: it
starts anvil, deploys and configures the contracts, writes each node's encrypted key files and
config, starts one OS process per node (handing it the key files' passphrase in its
environment, never in a file), watches the chain to know which round is in progress, fires the
scenario's faults (SIGKILL and restart, SIGSTOP/SIGCONT, late admission, network partition,
chain restart), and when the last round is final, pays rewards and writes the run directory.
A scenario with a partition runs each node in its own network namespace (:mod:`testnet.netns`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account

from incentive.chain import connect_rpc
from incentive.errors import ChainError
from node.config import to_toml_dict
from node.data import load_site
from node.keystore import load_or_create_identity, write_account_key
from node.model import build_model
from node.passphrase import ENV_VAR, Passphrase
from node.sealed_keys import LIGHT_SCRYPT_N, check_scrypt_n
from node.weights import state_dict_to_weights, weights_hash
from testnet.anvil import AnvilChain, AnvilConfig, free_port
from testnet.errors import TestnetError
from testnet.events import EventCollector
from testnet.html_report import write_report
from testnet.keepers import make_keeper
from testnet.netns import NetworkLab, destroy_namespaces, namespaces_available
from testnet.scenario import FaultSpec, NodeSpec, Scenario, with_label_clusters
from testnet.summary import summarise_run

log = logging.getLogger(__name__)

POLL_SECONDS = 0.25
STOP_GRACE_SECONDS = 10.0


@dataclass
class NodeProcess:
    """A node of the testnet: its files, its account and (while running) its OS process."""

    spec: NodeSpec
    directory: Path
    account_key: str = field(repr=False)
    peer_id: str
    port: int
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return str(Account.from_key(self.account_key).address)

    @property
    def multiaddr(self) -> str:
        return f"/ip4/{self.host}/tcp/{self.port}/p2p/{self.peer_id}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class _Timer:
    due: float
    action: Callable[[], object]


@dataclass
class MultiProcessTestnet:
    """Runs one scenario end to end and writes its run directory.

    Each node's key files are encrypted with ``passphrase`` (None: a random one made for the
    run and kept in memory only) at scrypt cost ``scrypt_n``: by default the light cost, as
    the testnet's keys are anvil's throwaway accounts and eight nodes on two cores would
    otherwise spend seconds unlocking them at every start.
    """

    scenario: Scenario
    out_dir: Path
    data_dir: Path
    on_round: Callable[[int, str, str, float | None], None] | None = None
    passphrase: str | None = field(default=None, repr=False)
    scrypt_n: int = LIGHT_SCRYPT_N
    node_verbosity: int = 0  # -v flags for the node processes (their logs go to node.log)
    nodes: dict[str, NodeProcess] = field(default_factory=dict)
    faults_fired: list[dict[str, Any]] = field(default_factory=list)
    lab: NetworkLab | None = None
    _timers: list[_Timer] = field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            check_scrypt_n(self.scrypt_n)
        except ValueError as exc:
            raise TestnetError(f"the key files' {exc}") from None

    def up(self) -> dict[str, Any]:
        """Run the scenario; return the summary (also written to ``summary.json``)."""
        if self.out_dir.exists() and any(self.out_dir.iterdir()):
            raise TestnetError(
                f"{self.out_dir} already holds a run: choose another --out or delete it "
                "(its nodes' checkpoints would not match a new chain)"
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        self._passphrase = Passphrase(
            self.passphrase or secrets.token_urlsafe(24), "the testnet launcher", ENV_VAR
        )
        self.scenario = with_label_clusters(self.scenario, self.data_dir)
        self.collector = EventCollector(self.out_dir / "events.jsonl")
        chain_dir = self.out_dir / "chain"
        accounts = len(self.scenario.nodes) + 1
        host = "127.0.0.1"
        if self.scenario.needs_namespaces:
            self._create_lab()
            assert self.lab is not None
            host = self.lab.gateway
        self.anvil = AnvilChain(AnvilConfig(run_dir=chain_dir, accounts=accounts, host=host))
        try:
            self.anvil.start()
            self._deploy()
            self._prepare_nodes()
            for node in self.nodes.values():
                if node.spec.name not in self.scenario.late_joiners:
                    self._start(node)
            self._write_pids()
            self._supervise(started)
            return self._finish(started)
        finally:
            self.down()

    def down(self) -> None:
        """Stop every process this launcher started (nodes first, then anvil)."""
        for node in self.nodes.values():
            _stop_process(node.process)
        if hasattr(self, "anvil"):
            self.anvil.stop()
        if self.lab is not None:
            self.lab.destroy()

    # ---------------------------------------------------------------- set-up

    def _create_lab(self) -> None:
        problem = namespaces_available()
        if problem is not None:
            raise TestnetError(
                f"scenario {self.scenario.name!r} has a network partition, which runs each node "
                f"in its own network namespace, and this process cannot create one: {problem}"
            )
        self.lab = NetworkLab([n.name for n in self.scenario.nodes])
        self.lab.create()

    def _deploy(self) -> None:
        keys = self.anvil.private_keys(len(self.scenario.nodes) + 1)
        self.admin_key, self._node_keys = keys[0], keys[1:]
        self.w3 = connect_rpc(self.anvil.url)
        config = self.scenario.config
        first = self.scenario.nodes[0]
        site = load_site(config.federation.dataset, first.site, self.data_dir)
        model = build_model(
            site.dataset, site.n_features, config.federation.seed, config.training.hidden_units
        )
        self.pool_wei = int(config.federation.reward_pool_eth * 10**18)
        self.keeper = make_keeper(config.federation.ledger, self.w3, self.admin_key, self.pool_wei)
        self.keeper.deploy(bytes.fromhex(weights_hash(state_dict_to_weights(model))))
        # The supervisor loop must keep running while the chain is down (it restarts it).
        self.probe = self.keeper.prober()
        self.deployment_file = self.out_dir / "chain" / "deployment.json"
        self.deployment_file.write_text(self.keeper.deployment_json())

    def _prepare_nodes(self) -> None:
        for spec, key in zip(self.scenario.nodes, self._node_keys, strict=True):
            directory = self.out_dir / "nodes" / spec.name
            directory.mkdir(parents=True, exist_ok=True)
            write_account_key(directory / "account.key", key, self._passphrase, self.scrypt_n)
            identity = load_or_create_identity(
                directory / "identity.key", self._passphrase, self.scrypt_n
            )
            peer_id = str(_peer_id(identity))
            host = self.lab.address(spec.name) if self.lab else "127.0.0.1"
            node = NodeProcess(spec, directory, key, peer_id, free_port(), host)
            self.nodes[spec.name] = node
            if spec.name not in self.scenario.late_joiners and spec.admitted:
                self.keeper.admit(node.address, spec.name, spec.cluster)
        bootstrap = next(
            n.multiaddr
            for n in self.nodes.values()
            if n.spec.name not in self.scenario.late_joiners and n.spec.admitted
        )
        for node in self.nodes.values():
            self._write_node_config(node, bootstrap)

    def _write_node_config(self, node: NodeProcess, bootstrap: str) -> None:
        document = to_toml_dict(self.scenario.config)
        document["network"]["listen_port"] = node.port
        document["network"]["listen_host"] = node.host
        document["network"]["bootstrap"] = [] if bootstrap == node.multiaddr else [bootstrap]
        document["node"] = {
            "name": node.spec.name,
            "site": node.spec.site,
            "shard": node.spec.shard,
            "shards": node.spec.shards,
            "data_dir": str(self.data_dir),
            "state_dir": "state",
            "account_key_file": "account.key",
            "identity_key_file": "identity.key",
            "events_file": "events.jsonl",
            "linger_seconds": self.scenario.timeout,  # the launcher stops it when all are done
        }
        document["chain"] = {"url": self.anvil.url, "deployment_file": str(self.deployment_file)}
        (node.directory / "node.toml").write_text(_to_toml(document))

    # ----------------------------------------------------------- supervision

    def _start(self, node: NodeProcess) -> None:
        log_file = (node.directory / "node.log").open("ab")
        config = ["--config", str(node.directory / "node.toml")]
        verbosity = ["-v"] * self.node_verbosity
        argv = [sys.executable, "-m", "medswarm", *verbosity, "node", "run", *config]
        if node.spec.attack:  # a hostile node: the same process with the attack put in
            attack = ["-m", "testnet.attack_node", *verbosity, node.spec.attack, *config]
            argv = [sys.executable, *attack]
        if self.lab is not None:
            argv = self.lab.command(node.spec.name, argv)
        node.process = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, ENV_VAR: self._passphrase.reveal()},
        )
        self._write_pids()

    def _supervise(self, started: float) -> None:
        rounds = self.scenario.config.federation.rounds
        pending = sorted(self.scenario.faults, key=lambda f: f.round)
        reported = 0
        deadline = started + self.scenario.timeout
        while True:
            now = time.time()
            if now > deadline:
                raise TestnetError(
                    f"scenario {self.scenario.name!r} did not finish within "
                    f"{self.scenario.timeout:.0f}s (round {reported} of {rounds} final); see "
                    f"{self.out_dir}/nodes/*/node.log"
                )
            for timer in [t for t in self._timers if t.due <= now]:
                self._timers.remove(timer)
                timer.action()
            self.collector.poll(self.nodes.values())
            finalized = self._last_finalized()
            if finalized is not None:
                while reported < finalized and (
                    reported + 1 < finalized
                    or self.collector.mean_metric(reported + 1)[1] is not None
                ):
                    reported += 1
                    if self.on_round is not None:
                        final_hash = self._final_hash(reported)
                        self.on_round(reported, final_hash, *self.collector.mean_metric(reported))
                while pending and pending[0].round <= finalized + 1:
                    self._fire(pending.pop(0), finalized + 1)
            live = [n for n in self.nodes.values() if n.running]
            finished = self.collector.finished_nodes()
            if (
                reported >= rounds
                and not self._timers
                and all(n.spec.name in finished for n in live)
            ):
                return
            if reported < rounds and not live and not self._timers:
                raise TestnetError(
                    f"every node process has exited but only {reported} of {rounds} rounds are "
                    f"final; see {self.out_dir}/nodes/*/node.log"
                )
            time.sleep(POLL_SECONDS)

    def _final_hash(self, round_number: int) -> str:
        try:
            return self.probe.final_hash(round_number) or ""
        except ChainError:
            return ""

    def _last_finalized(self) -> int | None:
        try:
            return int(self.probe.last_finalized_round())
        except ChainError:
            return None  # the chain is restarting

    def _fire(self, fault: FaultSpec, round_number: int) -> None:
        node = self.nodes.get(fault.node)
        detail = ""
        if fault.kind == "crash-aggregator":
            first = self.keeper.aggregator_candidates(round_number, fault.cluster)[0]
            node = next(n for n in self.nodes.values() if n.address.lower() == first.lower())
            fault = dataclasses.replace(fault, kind="crash", node=node.spec.name)
            detail = f"first aggregator candidate of cluster {fault.cluster}; "
        if fault.kind == "crash" and node is not None:
            _kill(node.process)
            detail += "SIGKILL"
            if fault.restart_after is not None:
                self._later(fault.restart_after, lambda: self._restart(node, round_number))
                detail += f", restart after {fault.restart_after:.1f}s"
        elif fault.kind == "straggler" and node is not None and node.process is not None:
            os.kill(node.process.pid, signal.SIGSTOP)
            process = node.process
            self._later(fault.duration, lambda: _resume(process))
            detail = f"SIGSTOP for {fault.duration:.1f}s"
        elif fault.kind == "join" and node is not None:
            self.keeper.admit(node.address, node.spec.name, node.spec.cluster)
            self._start(node)
            detail = f"admitted in cluster {node.spec.cluster} and started"
        elif fault.kind == "partition" and self.lab is not None:
            self.lab.partition(fault.sides)
            self._later(fault.duration, lambda: self._heal(round_number))
            sides = " | ".join(", ".join(side) for side in fault.sides)
            detail = f"links cut between {sides}; healed after {fault.duration:.1f}s"
        elif fault.kind == "chain-restart":
            # SIGTERM: anvil writes its state file and exits; it comes back from that file.
            self.anvil.stop()
            self._later(fault.duration, self.anvil.start)
            detail = f"anvil stopped, started again from its state file after {fault.duration:.1f}s"
        target = fault.node or ("network" if fault.kind == "partition" else "chain")
        self._record_fault(fault.kind, target, round_number, detail)

    def _heal(self, partitioned_in: int) -> None:
        assert self.lab is not None
        self.lab.heal()
        now = self._last_finalized()
        current = partitioned_in if now is None else now + 1
        self._record_fault(
            "heal", "network", current, f"partition of round {partitioned_in} healed"
        )

    def _restart(self, node: NodeProcess, round_number: int) -> None:
        self._start(node)
        self._record_fault("restart", node.spec.name, round_number, "started again")

    def _later(self, seconds: float, action: Callable[[], object]) -> None:
        self._timers.append(_Timer(time.time() + seconds, action))

    def _record_fault(self, kind: str, node: str, round_number: int, detail: str) -> None:
        event = {
            "ts": time.time(),
            "event": "fault",
            "kind": kind,
            "node": node,
            "round": round_number,
            "detail": detail,
        }
        self.faults_fired.append(event)
        self.collector.add(event)
        log.info("fault: %s %s in round %d (%s)", kind, node, round_number, detail)

    def _write_pids(self) -> None:
        pids = {"anvil": self.anvil.pid}
        pids.update(
            {n.spec.name: n.process.pid for n in self.nodes.values() if n.process and n.running}
        )
        record = {"pids": pids, "namespaces": self.lab.namespaces if self.lab else []}
        (self.out_dir / "testnet.json").write_text(json.dumps(record, indent=2) + "\n")

    # ------------------------------------------------------------- results

    def _finish(self, started: float) -> dict[str, Any]:
        for node in self.nodes.values():
            _stop_process(node.process)
        self.collector.poll(self.nodes.values())
        credits = self.keeper.pay_out([node.account_key for node in self.nodes.values()])
        self.keeper.write_record(self.out_dir)
        self.collector.write()
        summary = summarise_run(
            scenario=self.scenario,
            out_dir=self.out_dir,
            keeper=self.keeper,
            nodes=list(self.nodes.values()),
            events=self.collector.events,
            faults=self.faults_fired,
            seconds=time.time() - started,
            pool_wei=self.pool_wei,
            credits=credits,
        )
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        write_report(self.out_dir)
        return summary


def stop_testnet(out_dir: Path) -> list[str]:
    """``testnet down``: stop the processes a launcher recorded in ``out_dir/testnet.json``."""
    record = out_dir / "testnet.json"
    if not record.exists():
        raise TestnetError(f"{record} not found: no testnet was started with --out {out_dir}")
    stopped = []
    recorded = json.loads(record.read_text())
    for name, pid in recorded.get("pids", {}).items():
        if pid is None:
            continue
        try:
            os.killpg(int(pid), signal.SIGTERM)
            stopped.append(name)
        except (ProcessLookupError, PermissionError):
            continue
    namespaces = destroy_namespaces(recorded.get("namespaces", []))
    if namespaces:
        stopped.append(f"{len(namespaces)} network namespaces")
    return stopped


def _peer_id(identity: Any) -> str:
    from libp2p.peer.id import ID

    return str(ID.from_pubkey(identity.public_key).to_base58())


def _kill(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_GRACE_SECONDS)


def _resume(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGCONT)


def _stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGCONT)
    except ProcessLookupError:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_GRACE_SECONDS)


def _to_toml(document: dict[str, dict[str, Any]]) -> str:
    """Write the flat tables of a node config as TOML (values: str, number, bool, list)."""
    lines = []
    for table, values in document.items():
        lines.append(f"[{table}]")
        for key, value in values.items():
            if value is None:
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))
