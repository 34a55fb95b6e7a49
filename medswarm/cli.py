"""The ``medswarm`` command line: one entry point with sub-commands.

Exit code 2 with ``error: <message>`` on stderr for any MedswarmError, and for a full disk.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable, Sequence

from incentive.cli import add_audit_parser
from medswarm import __version__
from medswarm.bench_cli import add_bench_parser
from medswarm.consortium_cli import add_consortium_parser
from medswarm.errors import MedswarmError, leaf_errors
from medswarm.json_logs import JsonLineFormatter
from node.cli import add_init_parser, add_node_parser
from testnet.cli import add_testnet_parser


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="medswarm", description="Serverless federated learning for hospital consortia."
    )
    parser.add_argument("--version", action="version", version=f"medswarm {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (repeatable)"
    )
    parser.add_argument(
        "--log-json",
        action="store_true",
        help="write log records to stderr as JSON lines (ts, time, level, logger, message, "
        "pid, exception)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_init_parser(subparsers)
    add_node_parser(subparsers)
    add_testnet_parser(subparsers)
    add_audit_parser(subparsers)
    add_bench_parser(subparsers)
    add_consortium_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose, json_lines=getattr(args, "log_json", False))
    return run_reporting_errors(lambda: int(args.handler(args)))


def configure_logging(verbose: int, json_lines: bool = False) -> None:
    """Warnings only; ``-v`` adds info, ``-vv`` debug (and py-libp2p's own chatter).

    ``json_lines`` writes each record as one JSON object (medswarm/json_logs.py).
    """
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLineFormatter()
        if json_lines
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    logging.basicConfig(level=logging.WARNING - 10 * min(verbose, 2), handlers=[handler])
    # py-libp2p logs routine connection management at INFO; show it only with -vv.
    logging.getLogger("libp2p").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)


def run_reporting_errors(command: Callable[[], int]) -> int:
    """Run ``command``; report medswarm's errors as ``error: ...`` lines and exit code 2."""
    try:
        return command()
    except (MedswarmError, OSError, BaseExceptionGroup) as exc:
        # Concurrent tasks (trio nurseries) report their failures together.
        leaves = leaf_errors(exc)
        if not all(isinstance(leaf, MedswarmError) or _disk_full(leaf) for leaf in leaves):
            raise
        for message in dict.fromkeys(_explain(leaf) for leaf in leaves):
            print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def _explain(error: BaseException) -> str:
    if not _disk_full(error):
        return str(error)
    where = f" writing {error.filename}" if isinstance(error, OSError) and error.filename else ""
    return (
        f"the disk is full ({error}){where}: free some space, or keep fewer rounds of blobs "
        "(network.retain_rounds); a node then resumes from its last checkpoint"
    )


if __name__ == "__main__":
    sys.exit(main())
