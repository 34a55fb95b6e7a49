"""``medswarm testnet``: launch a federation on this machine."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, TextIO

import torch
import trio

from node.config import load_config, with_overrides
from node.data import resolve_data_dir
from node.passphrase import ENV_VAR
from node.sealed_keys import DEFAULT_SCRYPT_N, LIGHT_SCRYPT_N
from testnet.local import LocalRun, run_local_federation
from testnet.multiproc import MultiProcessTestnet, stop_testnet
from testnet.report import format_table
from testnet.report_cli import add_report_parser
from testnet.scenario import load_scenario


def add_testnet_parser(subparsers: Any) -> None:
    """Register ``testnet`` and its sub-commands on the ``medswarm`` parser."""
    testnet = subparsers.add_parser(
        "testnet", help="run a federation of N hospital nodes on this machine"
    )
    commands = testnet.add_subparsers(dest="testnet_command", required=True)
    run = commands.add_parser(
        "run",
        help="run N nodes and an embedded chain in one process",
        description=(
            "Start an in-process Ethereum chain, deploy the contracts, start N hospital nodes "
            "(each a libp2p host on 127.0.0.1 with its own key and its own site's data), run "
            "the rounds, pay rewards and write a run directory (rounds.jsonl, summary.json, "
            "model-final.bin, chain/)."
        ),
    )
    run.add_argument("--nodes", type=int, default=4, help="number of hospitals (default 4)")
    run.add_argument("--dataset", default=None, help="data set (default: heart-disease)")
    run.add_argument("--rounds", type=int, default=None, help="rounds (default: from config, 20)")
    run.add_argument("--seed", type=int, default=None, help="seed (default: from config, 0)")
    run.add_argument("--config", type=Path, default=None, help="TOML config file")
    run.add_argument(
        "--ledger",
        choices=("ledger", "consortium"),
        default=None,
        help="where rounds are kept (default: from config, ledger; docs/ledger.md)",
    )
    run.add_argument(
        "--data-dir",
        default=None,
        help="directory holding the data sets (default: $MEDSWARM_DATA, else ../shared/data)",
    )
    run.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory")
    run.add_argument("--json", action="store_true", help="print summary.json to stdout at the end")
    run.set_defaults(handler=run_testnet)
    add_report_parser(commands)

    up = commands.add_parser(
        "up",
        help="run a scenario: anvil and one OS process per node, with faults",
        description=(
            "Start anvil, deploy the contracts, start one process per node of the scenario, "
            "inject its faults on their rounds, and when the last round is final pay rewards "
            "and write the run directory: events.jsonl, summary.json, model-final.bin, chain/, "
            "nodes/<name>/ (config, encrypted keys, log, state) and the report. The nodes' "
            f"key files are encrypted with ${ENV_VAR} when it is set, else with a passphrase "
            "made for the run and kept in memory only; either way the nodes get it in their "
            "environment."
        ),
    )
    up.add_argument("--scenario", type=Path, required=True, help="scenario TOML file")
    up.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    up.add_argument("--rounds", type=int, default=None, help="override the scenario's rounds")
    up.add_argument(
        "--ledger",
        choices=("ledger", "consortium"),
        default=None,
        help="override where the scenario's rounds are kept (docs/ledger.md)",
    )
    up.add_argument(
        "--scrypt-n",
        type=int,
        default=LIGHT_SCRYPT_N,
        metavar="N",
        help=f"scrypt cost of the nodes' key files (default {LIGHT_SCRYPT_N}, light: the "
        f"testnet's accounts are throwaway; a real node uses {DEFAULT_SCRYPT_N})",
    )
    up.add_argument("--data-dir", default=None, help="data directory (default as for run)")
    up.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory")
    up.add_argument("--json", action="store_true", help="print summary.json at the end")
    up.set_defaults(handler=up_testnet)

    down = commands.add_parser(
        "down", help="stop the processes (and network namespaces) a testnet up started"
    )
    down.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory")
    down.set_defaults(handler=down_testnet)


def run_testnet(args: argparse.Namespace) -> int:
    """Handler of ``medswarm testnet run``."""
    # Nodes train small models concurrently in worker threads: one torch thread each.
    torch.set_num_threads(1)
    config = with_overrides(
        load_config(args.config),
        dataset=args.dataset,
        rounds=args.rounds,
        seed=args.seed,
        ledger=args.ledger,
    )
    data_dir = resolve_data_dir(args.data_dir, os.environ)
    run = LocalRun(config=config, nodes=args.nodes, data_dir=data_dir, out_dir=args.out)
    out = sys.stderr if args.json else sys.stdout
    progress = Progress(config.federation.rounds, out)
    print(
        f"medswarm: {args.nodes} hospitals, {config.federation.dataset}, "
        f"{config.federation.rounds} rounds, seed {config.federation.seed} -> {args.out}",
        file=out,
    )
    progress.start()
    summary = trio.run(run_local_federation, run, progress.round_done)
    progress.finish()
    print(format_table(summary), file=out)
    agree = "all nodes agree" if summary.nodes_agree else "NODES DISAGREE"
    print(f"final global model {summary.final_global_hash} ({agree})", file=out)
    print(f"run directory: {args.out}  (audit: medswarm audit --run-dir {args.out})", file=out)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2, sort_keys=True))
    return 0 if summary.nodes_agree else 1


def up_testnet(args: argparse.Namespace) -> int:
    """Handler of ``medswarm testnet up``."""
    scenario = load_scenario(args.scenario)
    config = with_overrides(scenario.config, seed=args.seed, rounds=args.rounds, ledger=args.ledger)
    scenario = dataclasses.replace(scenario, config=config)
    data_dir = resolve_data_dir(args.data_dir, os.environ)
    out = sys.stderr if args.json else sys.stdout
    total = config.federation.rounds
    print(
        f"medswarm: scenario {scenario.name}, {len(scenario.nodes)} node processes, "
        f"{total} rounds, {len(scenario.faults)} faults -> {args.out}",
        file=out,
    )

    def on_round(round_number: int, final_hash: str, metric: str, value: float | None) -> None:
        shown = "n/a" if value is None else f"{value:.3f}"
        print(
            f"round {round_number:>3}/{total}  final {final_hash[:16]}  mean {metric} {shown}",
            file=out,
            flush=True,
        )

    passphrase = os.environ.get(ENV_VAR) or None
    origin = f"${ENV_VAR}" if passphrase else "a passphrase made for this run (kept in memory)"
    print(f"node key files encrypted with {origin}, scrypt n = {args.scrypt_n}", file=out)
    testnet = MultiProcessTestnet(
        scenario,
        args.out,
        data_dir,
        on_round=on_round,
        passphrase=passphrase,
        scrypt_n=args.scrypt_n,
        node_verbosity=args.verbose,
    )
    # SIGTERM unwinds like Ctrl-C, so the launcher still stops the processes it started.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    summary = testnet.up()
    agree = "all live nodes agree" if summary["nodes_agree"] else "NODES DISAGREE"
    print(f"final global model {summary['final_global_hash']} ({agree})", file=out)
    print(f"run directory: {args.out}", file=out)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0 if summary["nodes_agree"] else 1


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def down_testnet(args: argparse.Namespace) -> int:
    """Handler of ``medswarm testnet down``."""
    stopped = stop_testnet(args.out)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


class Progress:
    """A progress bar on a terminal, and one plain line per round everywhere."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out, self.done = total, out, 0
        self.tty = out.isatty()

    def start(self) -> None:
        self._draw_bar()

    def round_done(self, line: dict[str, Any]) -> None:
        self.done += 1
        digest = line["global_hash"] or "DISAGREE:" + ",".join(h[:8] for h in line["global_hashes"])
        text = (
            f"round {line['round']:>3}/{self.total}  global {digest[:16]}  "
            f"mean {line['metric_name']} {line['mean_test_metric']:.3f}"
        )
        if self.tty:
            self.out.write("\r\033[K")
        print(text, file=self.out)
        self._draw_bar()

    def _draw_bar(self) -> None:
        if self.tty:
            width = 30
            filled = width * self.done // self.total
            self.out.write(f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
        self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\r\033[K")
            self.out.flush()
