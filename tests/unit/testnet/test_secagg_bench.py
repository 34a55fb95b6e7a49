"""The secure-aggregation bench with small sizes, and its command line."""

import json

import pytest

from medswarm.cli import main
from testnet.errors import TestnetError
from testnet.secagg_bench import check_arguments, measure_secagg


def test_a_small_round_is_exact_and_sends_what_the_formats_say() -> None:
    result = measure_secagg(members=4, dropouts=1, parameters=1000)

    assert result.exact
    assert result.threshold == 3
    assert result.max_abs_error <= 3 * 2.0**-21 + 1e-6  # 3 survivors' rounding, float32's
    # Each message has a 34-byte header and a 2-byte sender, then (docs: node/secagg_messages.py):
    assert result.bytes_sent == {
        "keys": 36 + 2 * 32,
        "shares": 36 + 2 + 3 * (2 + 148),  # sealed shares for the 3 other members
        "masked_input": 36 + 2 + 4 * 2 + 8 + 1000 * 4,  # 4 peers, 1000 words
        "answer": 36 + 2 + 3 * (2 + 66) + 2 + 1 * (2 + 66),  # 3 seed shares, 1 key share
    }
    assert result.bytes_per_member == 4954
    summary = result.as_dict()
    assert summary["plain_bytes"] == 4000
    assert summary["bytes_vs_plain"] == pytest.approx(4954 / 4000, abs=1e-4)
    assert summary["seconds"] == pytest.approx(sum(result.phase_seconds.values()), abs=1e-3)
    assert json.loads(json.dumps(summary)) == summary


@pytest.mark.parametrize(
    ("members", "dropouts", "params", "threshold", "flag"),
    [
        (1, 0, 100, 0, "--members"),
        (4, 0, 0, 0, "--params"),
        (4, 2, 100, 0, "--dropouts must be 0..1"),
        (4, 1, 100, 4, "--dropouts must be 0..0"),
        (4, 0, 100, 2, "--threshold must be 3..4"),
    ],
)
def test_runs_that_cannot_complete_are_refused(
    members: int, dropouts: int, params: int, threshold: int, flag: str
) -> None:
    with pytest.raises(TestnetError, match=flag):
        check_arguments(members, dropouts, params, threshold)


def test_the_command_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "secagg", "--members", "3", "--dropouts", "1", "--params", "500", "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["members"], result["dropouts"], result["params"]) == (3, 1, 500)
    assert result["exact"] is True
    for key in ("seconds", "bytes_per_member", "plain_seconds", "plain_bytes", "bytes_vs_plain"):
        assert key in result

    assert main(["bench", "secagg", "--members", "3", "--params", "100"]) == 0
    assert "exactly the plain fixed-point sum" in capsys.readouterr().out
    assert main(["bench", "secagg", "--members", "3", "--dropouts", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: --dropouts")
