"""Backoff for an unreachable chain, on a fake clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests

from incentive import retry
from incentive.errors import ChainError, ChainUnavailable, ContractReverted
from incentive.retry import RetryPolicy, call_with_retry

URL = "http://127.0.0.1:8545"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(retry.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(retry.time, "sleep", fake.sleep)
    return fake


def failing(times: int, error: Callable[[], Exception]) -> Callable[[], str]:
    calls = 0

    def fn() -> str:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise error()
        return "answer"

    return fn


def test_waits_double_from_the_first_delay_up_to_the_cap(clock: FakeClock) -> None:
    fn = failing(7, lambda: requests.ConnectionError("refused"))

    assert call_with_retry(fn, RetryPolicy(), URL, "probe") == "answer"
    assert clock.sleeps == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]


def test_gives_up_when_the_total_is_spent(clock: FakeClock) -> None:
    fn = failing(1000, lambda: ConnectionRefusedError(111, "Connection refused"))

    with pytest.raises(ChainUnavailable) as caught:
        call_with_retry(fn, RetryPolicy(first_delay=1, max_delay=4, total=10), URL, "Ledger.attest")

    # 1 + 2 + 4, then the 3 s left of the budget, then one last try at the deadline
    assert clock.sleeps == [1, 2, 4, 3]
    message = str(caught.value)
    assert URL in message and "Ledger.attest" in message and "10.0 s" in message
    assert "Connection refused" in message


@pytest.mark.parametrize(
    "error",
    [
        lambda: ContractReverted("Registry", "admit", "NotAdmin"),
        lambda: ValueError("execution reverted"),
        lambda: ChainUnavailable(URL, "already given up"),  # a ConnectionError, but ours
    ],
)
def test_answers_and_our_own_errors_are_not_retried(
    clock: FakeClock, error: Callable[[], Exception]
) -> None:
    with pytest.raises(type(error())):
        call_with_retry(failing(1, error), RetryPolicy(), URL, "call")
    assert clock.sleeps == []


def test_timeouts_are_retried(clock: FakeClock) -> None:
    fn = failing(2, lambda: requests.ReadTimeout("Read timed out. (read timeout=10)"))

    assert call_with_retry(fn, RetryPolicy(), URL, "call") == "answer"
    assert clock.sleeps == [0.2, 0.4]


def test_a_zero_budget_fails_at_once(clock: FakeClock) -> None:
    with pytest.raises(ChainUnavailable):
        call_with_retry(failing(1, ConnectionResetError), RetryPolicy(total=0), URL, "call")
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "bad", [{"first_delay": 0}, {"first_delay": 2, "max_delay": 1}, {"total": -1}]
)
def test_nonsense_policies_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ChainError, match="retry policy"):
        RetryPolicy(**bad)
