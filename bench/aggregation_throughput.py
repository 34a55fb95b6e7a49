"""Throughput of the streaming FedAvg beside a plain ``numpy.add``, measured in one run.

    python bench/aggregation_throughput.py [--updates 8] [--values 10000000] [--repeats 5]
                                           [--json]

The same as ``medswarm bench aggregate``; what is measured is described in
:mod:`testnet.aggregate_bench`. Exit code 1 when the ratio misses its target (0.5).
Run from the project root.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medswarm.bench_cli import add_aggregate_arguments, run_aggregate_bench


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(
        prog="python bench/aggregation_throughput.py",
        description="Streaming FedAvg throughput beside numpy.add, in one run.",
    )
    add_aggregate_arguments(parser)
    return run_aggregate_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
