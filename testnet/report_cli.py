"""``medswarm testnet report``: plots and an HTML page for a finished run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from testnet.html_report import write_report


def add_report_parser(commands: Any) -> None:
    """Register ``report`` on the ``medswarm testnet`` sub-parsers."""
    report = commands.add_parser(
        "report",
        help="write plots and a self-contained report.html for a run directory",
        description=(
            "Read RUN_DIR/events.jsonl and RUN_DIR/summary.json and write RUN_DIR/plots/"
            "{accuracy,contribution,traffic}.png and RUN_DIR/report.html, a single page that "
            "needs no network to view."
        ),
    )
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a testnet run directory")
    report.set_defaults(handler=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Handler of ``medswarm testnet report``: write the report and print its path."""
    print(write_report(args.run_dir))
    return 0
