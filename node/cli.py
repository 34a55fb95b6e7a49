"""``medswarm node``: run one hospital node as its own process."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch
import trio

from node.config import load_config
from node.errors import ConfigError
from node.passphrase import ENV_VAR, node_passphrase
from node.process import release_large_allocations, run_node_process


def add_node_parser(subparsers: Any) -> None:
    """Register ``node`` and its sub-commands on the ``medswarm`` parser."""
    node = subparsers.add_parser("node", help="run one hospital node")
    commands = node.add_subparsers(dest="node_command", required=True)
    run = commands.add_parser(
        "run",
        help="run a node from its config file until the federation's last round is final",
        description=(
            "Start a hospital node: load or create its encrypted key files, load its site's "
            "data, connect to the chain named in [chain] and to the members the registry "
            "lists, and take part in rounds until the last one is final. Restarted with the "
            "same config, it resumes from its checkpoint. The key files' passphrase comes "
            f"from the file named in node.passphrase_file, else from ${ENV_VAR}."
        ),
    )
    run.add_argument("--config", type=Path, required=True, help="the node's TOML config file")
    run.set_defaults(handler=run_node)


def run_node(args: argparse.Namespace) -> int:
    """Handler of ``medswarm node run``."""
    if not args.config.exists():
        raise ConfigError(f"config file {args.config} does not exist")
    config = load_config(args.config)
    base_dir = args.config.resolve().parent
    passphrase = node_passphrase(config.node.passphrase_file, base_dir, os.environ)
    torch.set_num_threads(1)
    release_large_allocations()
    return trio.run(run_node_process, config, base_dir, passphrase)
