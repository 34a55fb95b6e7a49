"""The blob bench's arithmetic and its command line; the processes themselves are not started."""

import json

import pytest

from medswarm.cli import main
from testnet.blob_bench import BlobBenchResult


def test_medians_become_mb_per_second_and_ratios_to_raw_tcp() -> None:
    result = BlobBenchResult(
        size_bytes=10_000_000,
        seconds={"raw_tcp": [0.01, 0.03, 0.02], "yamux": [1.0, 0.5, 2.0], "bulk": [0.2, 0.1, 0.05]},
    ).as_dict()
    # Medians 0.02 s, 1.0 s and 0.1 s for 10 MB: 500, 10 and 100 MB/s.
    assert result["raw_tcp_mb_s"] == pytest.approx(500)
    assert result["yamux_mb_s"] == pytest.approx(10)
    assert result["throughput_mb_s"] == pytest.approx(100)
    assert result["ratio_to_raw_tcp"] == pytest.approx(0.2)
    assert result["speedup_over_yamux"] == pytest.approx(10)
    assert json.loads(json.dumps(result)) == result


def test_bad_sizes_are_refused_with_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "blob", "--size-mib", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
