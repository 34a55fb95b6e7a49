"""How many inputs each fuzz target gets, how long one may take, and how many ran.

The number of examples per test comes from ``MEDSWARM_FUZZ_EXAMPLES`` (default
:data:`SHORT_RUN_EXAMPLES`, the short run of the normal test suite); ``make fuzz`` raises it.
The short run is derandomised, so every run of the suite feeds the same inputs; with
``MEDSWARM_FUZZ_RANDOM=1`` each run draws fresh ones (hypothesis prints how to replay a
failure).

Each input runs under the recursion limit of a node process (100,000: eth-account raises it
when imported), not the lower one hypothesis sets while a test runs, so that input nested
deeply enough to overflow the C stack crashes here as it would crash a node.

A slow input fails its test in two ways: hypothesis's ``deadline`` fails an example that
finished but took longer than :data:`DEADLINE_MS`, and :func:`one_input` interrupts one that
has not finished after :data:`HANG_SECONDS` (a deadline alone would wait for ever). An input
that makes a target allocate more than :data:`MEMORY_HEADROOM_BYTES` fails with
``MemoryError`` instead of sending the machine to its out-of-memory killer.
"""

from __future__ import annotations

import os
import resource
import signal
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from types import FrameType

import eth_account  # noqa: F401  (imported for its effect on the recursion limit)
from hypothesis import HealthCheck, settings

EXAMPLES_VARIABLE = "MEDSWARM_FUZZ_EXAMPLES"
RANDOM_VARIABLE = "MEDSWARM_FUZZ_RANDOM"
SHORT_RUN_EXAMPLES = 200
DEADLINE_MS = 2000  # a few milliseconds is usual; this leaves room for a loaded machine
HANG_SECONDS = 10.0
MEMORY_HEADROOM_BYTES = 2 * 2**30
NODE_RECURSION_LIMIT = sys.getrecursionlimit()


def examples_per_test() -> int:
    """Examples per fuzz test, from the environment."""
    text = os.environ.get(EXAMPLES_VARIABLE, "")
    if not text:
        return SHORT_RUN_EXAMPLES
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"{EXAMPLES_VARIABLE}={text!r}: give a positive number of examples")
    return count


RANDOM = os.environ.get(RANDOM_VARIABLE, "") not in ("", "0")

FUZZ = settings(
    max_examples=examples_per_test(),
    deadline=timedelta(milliseconds=DEADLINE_MS),
    derandomize=not RANDOM,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""The settings of every fuzz test (registered as the ``medswarm-fuzz`` profile too)."""


def fewer(divisor: int) -> settings:
    """:data:`FUZZ` with a ``1/divisor`` share of the examples, for a test whose every input
    is slow by design (a file of hundreds of thousands of nested brackets)."""
    return settings(FUZZ, max_examples=max(1, examples_per_test() // divisor))


inputs_run: Counter[str] = Counter()
"""Inputs fed to each target in this session, by target name."""


class Hang(Exception):
    """One input kept a target busy for longer than :data:`HANG_SECONDS`.

    An :class:`Exception`, so that hypothesis reports (and shrinks) the input; should a
    target's own ``except Exception`` swallow it, the deadline still fails the example.
    """


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Hang(f"one input ran for more than {HANG_SECONDS} s")


def _address_space_bytes() -> int:
    """This process's virtual memory size (0 where ``/proc`` is not there to tell)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


_memory_cap: int | None = None


@contextmanager
def _memory_capped() -> Iterator[None]:
    """Cap the address space at its size before the first input plus the headroom: fixed,
    so that what failed inputs leave behind (their tracebacks keep their frames) counts."""
    global _memory_cap
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if _memory_cap is None and (used := _address_space_bytes()):
        _memory_cap = used + MEMORY_HEADROOM_BYTES
    if _memory_cap is not None:
        cap = _memory_cap if hard == resource.RLIM_INFINITY else min(_memory_cap, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextmanager
def one_input(target: str) -> Iterator[None]:
    """Count one input for ``target``, run it under a node's recursion limit with bounded
    memory, and interrupt it if it hangs."""
    inputs_run[target] += 1
    limit = sys.getrecursionlimit()
    previous = signal.signal(signal.SIGALRM, _interrupt)
    sys.setrecursionlimit(NODE_RECURSION_LIMIT)
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        with _memory_capped():
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.setrecursionlimit(limit)
        signal.signal(signal.SIGALRM, previous)
