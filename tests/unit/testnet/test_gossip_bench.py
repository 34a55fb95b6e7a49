"""The dissemination bench's argument checks, arithmetic and output; no process is started."""

import json

import pytest

from medswarm.cli import main
from testnet.errors import TestnetError
from testnet.gossip_bench import GossipBenchResult, check_arguments


def test_medians_of_the_measured_rounds_and_the_speed_up() -> None:
    result = GossipBenchResult(
        nodes=8,
        size_bytes=4 * 2**20,
        seconds={"bulk": [0.5, 0.7, 0.4], "stock": [3.0, 4.0, 3.5]},
        cpu_seconds={"bulk": [1.0, 1.2, 0.9], "stock": [7.0, 6.0, 6.5]},
        warm_up_seconds={"bulk": 2.0, "stock": 5.0},
        blobs_verified=8 * 8 * 4 * 2,
        max_concurrent_fetches=4,
        load_average_before=(0.5, 0.5, 0.5),
        load_average=(1.5, 1.0, 0.5),
    ).as_dict()
    # Medians: 0.5 s and 3.5 s per round (7x), 1.0 and 6.5 CPU seconds.
    assert result["round_seconds"] == pytest.approx(0.5)
    assert result["baseline_round_seconds"] == pytest.approx(3.5)
    assert result["speedup"] == pytest.approx(7.0)
    assert result["cpu_seconds"] == pytest.approx(1.0)
    assert result["baseline_cpu_seconds"] == pytest.approx(6.5)
    assert (result["nodes"], result["size_mib"], result["rounds"]) == (8, 4.0, 3)
    assert json.loads(json.dumps(result)) == result


@pytest.mark.parametrize(
    ("nodes", "size_mib", "rounds", "concurrency", "named"),
    [
        (1, 4, 3, None, "--nodes"),
        (8, 0, 3, None, "--size-mib"),
        (8, 4, 1, None, "--rounds"),
        (8, 4, 3, 0, "--max-concurrent-fetches"),
    ],
)
def test_arguments_it_cannot_run_with_are_named(
    nodes: int, size_mib: int, rounds: int, concurrency: int | None, named: str
) -> None:
    with pytest.raises(TestnetError, match=named):
        check_arguments(nodes, size_mib, rounds, concurrency)


def test_the_command_refuses_them_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "gossip", "--nodes", "1"]) == 2
    assert "--nodes" in capsys.readouterr().err
