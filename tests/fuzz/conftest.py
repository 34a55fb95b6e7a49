"""The fuzz suite's settings profile and its summary of inputs per target."""

from __future__ import annotations

import pytest
from hypothesis import settings

from tests.fuzz.budget import FUZZ, inputs_run

settings.register_profile("medswarm-fuzz", FUZZ)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not inputs_run:
        return
    terminalreporter.section("fuzz inputs per target")
    width = max(len(target) for target in inputs_run)
    for target, count in sorted(inputs_run.items()):
        terminalreporter.write_line(f"{target:<{width}}  {count:>9,}")
    terminalreporter.write_line(f"{'total':<{width}}  {sum(inputs_run.values()):>9,}")
