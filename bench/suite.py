"""Every `medswarm bench` measurement in one run: JSON results, a printed table and a plot.

    python bench/suite.py [--quick | --ci] [--only NAME ... [--update]]
                          [--out bench/results/latest.json] [--plot PATH]
    python bench/suite.py --plot-only RESULTS.json [--plot PATH]

Each entry of :data:`PLAN` runs ``medswarm bench <command> ... --json`` in its own process (so
one that fails or runs out of time costs only its own row) and keeps the JSON it printed. Each
bench measures its baseline in the same run (raw TCP, plain sums, the same learning in memory,
the Ledger's gas beside the Consortium's), so the ratios hold on whatever machine runs it.
``--quick`` runs every entry at a small size, for a smoke run; ``--ci`` runs the few entries
marked ``ci`` at that size (about a minute), as ``make test`` does after pytest. The suite exits
1 when a bench fails or runs out of time, and 0 when every bench gave its figures, even ones
that miss their target: figures are reported, not asserted. The scaling plot
(:mod:`testnet.scaling_plot`) is drawn from the results document, next to it as
``scaling.png`` unless ``--plot`` names another file; ``--plot-only`` redraws it from an
existing results file without running anything. ``--only NAME ... --update`` measures those
entries again and replaces them in the existing results file, leaving the others as they
were; every entry records the commit and the time it was measured. The file written and its
keys are described in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from testnet.scaling_plot import write_scaling_plot

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Entry:
    """One bench run: its name in the results, the sub-command's arguments at full size and
    in ``--quick`` mode (None: left out of a quick run), how long it may take at full size,
    the figures the table shows (dotted paths into its JSON; the first numbers if none), and
    whether ``--ci`` runs it (at its quick size)."""

    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...] | None
    timeout: float = 1800.0
    figures: tuple[str, ...] = ()
    ci: bool = False


Mode = Literal["full", "quick", "ci"]
QUICK_TIME_DIVISOR = 6  # a quick entry may take a sixth of its full-size time limit
CI_TIME_LIMIT = 120.0  # seconds for any one entry of a CI run, whose whole budget is short


PLAN: tuple[Entry, ...] = (
    Entry(
        "blob",
        ("blob", "--size-mib", "64"),
        ("blob", "--size-mib", "8", "--repeat", "2"),
        figures=("throughput_mb_s", "raw_tcp_mb_s", "ratio_to_raw_tcp"),
        ci=True,
    ),
    Entry(
        "gossip",
        ("gossip", "--nodes", "8", "--size-mib", "4"),
        ("gossip", "--nodes", "4", "--size-mib", "1", "--rounds", "3"),
        figures=("nodes", "round_seconds", "baseline_round_seconds", "speedup"),
    ),
    Entry(
        "aggregate",
        ("aggregate",),
        ("aggregate", "--values", "1000000", "--repeats", "2"),
        figures=("values_per_update", "seconds.running_mean", "seconds.numpy_add", "ratio"),
        ci=True,
    ),
    *(
        Entry(
            f"secagg-{members}",
            ("secagg", "--members", str(members), "--dropouts", "1"),
            ("secagg", "--members", str(members), "--dropouts", "1", "--params", "10000"),
            figures=("exact", "seconds", "bytes_per_member"),
            ci=members == 4,
        )
        for members in (4, 8, 16)
    ),
    Entry(
        "gas",
        ("gas", "--hospitals", "8", "--clusters", "2"),
        ("gas", "--hospitals", "4", "--clusters", "2", "--rounds", "3"),
        figures=("gas_per_hospital_round", "baseline_gas_per_hospital_round", "ratio_to_baseline"),
        ci=True,
    ),
    *(
        Entry(
            f"fog-{codec}",
            ("fog", "--nodes", "4", "8", "--codec", codec),
            ("fog", "--nodes", "4", "--params", "10000", "--rounds", "2", "--codec", codec),
            figures=("runs.0.mode", "runs.0.bytes_sent", "runs.1.mode", "runs.1.bytes_sent"),
            ci=codec == "int8",  # flat against fog with an update codec that is not float32
        )
        for codec in ("fp32", "fp16", "int8", "topk")
    ),
    *(
        Entry(
            f"round-{nodes}x{params // 1_000_000}M",
            ("round", "--nodes", str(nodes), "--params", str(params), "--rounds", "3"),
            ("round", "--nodes", str(nodes), "--params", "100000", "--rounds", "2")
            if nodes <= 8 and params == 10**6
            else None,
            timeout=3600.0,
            figures=("round_seconds", "in_memory_round_seconds", "peak_rss_mb", "nodes_agree"),
            ci=nodes == 4,
        )
        for nodes, params in ((4, 10**6), (8, 10**6), (16, 10**6), (32, 10**6), (8, 10**7))
    ),
)
NAME_WIDTH = max(len(entry.name) for entry in PLAN)


def chosen_entries(mode: Mode, only: list[str] | None = None) -> list[Entry]:
    """The entries a run in ``mode`` makes, in plan order, narrowed to ``only`` if given."""
    return [
        entry
        for entry in PLAN
        if (not only or entry.name in only)
        and not (mode == "quick" and entry.quick is None)
        and not (mode == "ci" and not entry.ci)
    ]


def arguments(entry: Entry, mode: Mode) -> tuple[str, ...]:
    """The sub-command's arguments: its quick size in a quick or CI run, else its full size."""
    return entry.quick if mode != "full" and entry.quick is not None else entry.full


def time_limit(entry: Entry, mode: Mode) -> float:
    """Seconds an entry may take: its full limit, a share of it at quick size, capped in CI."""
    if mode == "full":
        return entry.timeout
    limit = entry.timeout / QUICK_TIME_DIVISOR
    return min(limit, CI_TIME_LIMIT) if mode == "ci" else limit


def exit_status(rows: dict[str, dict[str, Any]]) -> int:
    """1 if any bench failed or ran out of time, else 0 (a missed target is no error)."""
    return 1 if any("error" in row for row in rows.values()) else 0


def run_entry(entry: Entry, mode: Mode) -> dict[str, Any]:
    """Run one entry; its JSON, or what went wrong, with the command and the seconds."""
    args = arguments(entry, mode)
    command = [sys.executable, "-m", "medswarm", "bench", *args, "--json"]
    limit = time_limit(entry, mode)
    started = time.monotonic()
    row: dict[str, Any] = {"command": "medswarm bench " + " ".join((*args, "--json"))}
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=limit,
            check=False,
        )
    except subprocess.TimeoutExpired:
        row["error"] = f"no result within {limit:.0f} s"
    else:
        row.update(parse_output(done.returncode, done.stdout, done.stderr))
    row["seconds"] = round(time.monotonic() - started, 1)
    row["commit"] = commit()
    row["date"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    row["load_average"] = [round(value, 2) for value in os.getloadavg()]
    return row


def earlier_results(parser: argparse.ArgumentParser, path: Path, mode: Mode) -> dict[str, Any]:
    """The results file ``--update`` adds to, checked to be a suite results file of a run of
    the same size (a quick entry does not replace a full one)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        parser.error(f"--update needs an existing results file at {path}: {exc}")
    if not isinstance(document, dict) or not isinstance(document.get("benches"), dict):
        parser.error(f"{path} is not a results file of bench/suite.py (no 'benches' object)")
    if document.get("quick", False) != (mode != "full") or document.get("ci", False) != (
        mode == "ci"
    ):
        parser.error(f"{path} holds a run of another size than this {mode} run; --update keeps one")
    return document


def parse_output(code: int, stdout: str, stderr: str) -> dict[str, Any]:
    """The JSON object a bench printed (the whole output, or its last line), with its exit
    code (a bench exits 1 when it misses its target figure), or an ``error`` saying why there
    is none."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    for text in (stdout, lines[-1] if lines else ""):
        try:
            result = json.loads(text)
        except json.JSONDecodeError:
            continue
        if isinstance(result, dict):
            return {"result": result, "exit_code": code}
    tail = (stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {code}: {tail}"}


def figure(result: Any, path: str) -> Any:
    """The value at a dotted ``path`` (``runs.0.bytes_sent``) of a JSON result, or None."""
    for part in path.split("."):
        if isinstance(result, dict):
            result = result.get(part)
        elif isinstance(result, list) and part.isdigit() and int(part) < len(result):
            result = result[int(part)]
        else:
            return None
    return result


def headline(result: dict[str, Any], paths: tuple[str, ...], limit: int = 6) -> str:
    """``path=value`` for the figures named, or for the first ``limit`` top-level numbers."""
    if not paths:
        paths = tuple(key for key, value in result.items() if isinstance(value, int | float))[
            :limit
        ]
    shown = []
    for path in paths:
        value = figure(result, path)
        shown.append(f"{path}={value:.4g}" if isinstance(value, float) else f"{path}={value}")
    return "  ".join(shown)


def table(rows: dict[str, dict[str, Any]]) -> str:
    """One line per bench: name, seconds, headline figures or the error."""
    paths = {entry.name: entry.figures for entry in PLAN}
    lines = []
    for name, row in rows.items():
        if "result" in row:
            what = headline(row["result"], paths.get(name, ()))
        else:
            what = "FAILED: " + row["error"]
        lines.append(f"{name:<{NAME_WIDTH}}  {row['seconds']:>7.1f} s  {what}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """What ran the suite: enough to compare one results file with another."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }


def commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Exit status: 1 if a bench failed or ran out of time, else 0 (a bench that "
        "misses its target figure still counts as run). docs/benchmarks.md describes the "
        "results file.",
    )
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--quick",
        action="store_true",
        help="every bench at a small size, leaving out "
        + ", ".join(entry.name for entry in PLAN if entry.quick is None),
    )
    sizes.add_argument(
        "--ci",
        action="store_true",
        help="only the entries marked for CI ("
        + ", ".join(entry.name for entry in chosen_entries("ci"))
        + f"), at their quick size, each within {CI_TIME_LIMIT:.0f} s",
    )
    sizes.add_argument(
        "--plot-only",
        type=Path,
        metavar="RESULTS",
        help="run nothing: draw the scaling plot from this results file",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="these entries only (names as in the table)"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --only: replace those entries in the existing --out file, keep the others",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench/results/latest.json",
        help="the results file to write (default: bench/results/latest.json)",
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PATH",
        help="the scaling plot's PNG (default: scaling.png beside the results file)",
    )
    args = parser.parse_args(argv)
    if args.plot_only is not None:
        if args.only:
            parser.error("--plot-only runs no bench; leave out --only")
        document = json.loads(args.plot_only.read_text())
        plot = write_scaling_plot(document, args.plot or args.plot_only.with_name("scaling.png"))
        print(f"plot written to {plot}")
        return 0
    mode: Mode = "ci" if args.ci else "quick" if args.quick else "full"
    names = [entry.name for entry in PLAN]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"no bench named {', '.join(unknown)}; the names are {', '.join(names)}")
    chosen = chosen_entries(mode, args.only)
    if not chosen:
        parser.error(f"no entry named in --only runs in a {mode} run")
    if args.update and not args.only:
        parser.error("--update replaces the entries named by --only; name them")
    earlier = earlier_results(parser, args.out, mode) if args.update else None
    started = datetime.datetime.now(datetime.UTC)
    rows: dict[str, dict[str, Any]] = {}
    for entry in chosen:
        rows[entry.name] = run_entry(entry, mode)
        print(table({entry.name: rows[entry.name]}), flush=True)
    if earlier is not None:
        document = {**earlier, "benches": {**earlier["benches"], **rows}}
    else:
        document = {
            "date": started.isoformat(timespec="seconds"),
            "commit": commit(),
            "command": "python bench/suite.py" + ("" if mode == "full" else f" --{mode}"),
            "quick": mode != "full",
            "ci": mode == "ci",
            "machine": machine(),
            "benches": rows,
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    plot = write_scaling_plot(document, args.plot or args.out.with_name("scaling.png"))
    print(f"\nwritten to {args.out} and {plot}")
    return exit_status(rows)


if __name__ == "__main__":
    sys.exit(main())
