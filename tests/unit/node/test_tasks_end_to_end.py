"""A short in-memory federation for each task: the task's model, loss and metric end to end."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from node.data import SiteData, load_all_sites, load_csv_sites
from node.simulate import initial_weights, main, run_fedavg, run_local_only, run_pooled
from node.training import TrainingConfig, evaluate, train_local

CSV_ROWS = [
    "outcome,x1,x2",
    *(f"{int(i % 3 == 0)},{(i * 7) % 11 + 2 * (i % 3 == 0)},{(i * 5) % 13}" for i in range(30)),
]


def _csv_files(tmp_path: Path) -> list[Path]:
    paths = []
    for name in ("north", "south"):
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(CSV_ROWS) + "\n")
        paths.append(path)
    return paths


def test_tcga_federation_scores_a_c_index_per_region(data_dir: Path) -> None:
    sites = load_all_sites("tcga-brca", data_dir)
    result = run_fedavg(sites, TrainingConfig(local_steps=5), rounds=2, seed=0)
    assert result.metric_name == "c_index"
    assert len(result.round_metric) == 2
    assert all(0.0 <= s.metric <= 1.0 for s in result.scores)
    assert all(math.isnan(s.accuracy) for s in result.scores)
    assert 0.5 < result.mean_metric <= 1.0


def test_ecg_federation_scores_balanced_accuracy(data_dir: Path) -> None:
    sites = load_all_sites("mitbih-ecg", data_dir)[:3]  # three records keep it quick
    config = TrainingConfig(optimizer="adam", lr=0.003, local_steps=3, batch_size=32)
    result = run_fedavg(sites, config, rounds=1, seed=0)
    assert result.metric_name == "balanced_accuracy"
    assert all(0.0 <= s.metric <= 1.0 and 0.0 <= s.accuracy <= 1.0 for s in result.scores)
    assert math.isfinite(result.mean_metric)


def test_csv_federation_local_and_pooled(tmp_path: Path) -> None:
    files = _csv_files(tmp_path)
    sites = load_csv_sites(files, "outcome")
    config = TrainingConfig(local_steps=5, batch_size=8)
    results = [run_fedavg(sites, config, rounds=2, seed=0), run_local_only(sites, config, 2, 0)]
    results.extend(run_pooled(sites, config, rounds=2, seed=0))
    for result in results:
        assert result.metric_name == "accuracy"
        assert result.mean_metric == result.mean_accuracy
        assert 0.0 <= result.mean_metric <= 1.0


def test_survival_training_is_deterministic_and_lowers_the_loss(data_dir: Path) -> None:
    site = load_all_sites("tcga-brca", data_dir)[0]
    start = {"linear.weight": np.zeros((1, 39), dtype=np.float32)}
    config = TrainingConfig(local_steps=30)
    first = train_local(start, site, config, seed=5)
    again = train_local(start, site, config, seed=5)
    assert all(np.array_equal(first.weights[k], again.weights[k]) for k in start)
    before = evaluate(start, site.train_x, site.train_y, "tcga-brca")
    after = evaluate(first.weights, site.train_x, site.train_y, "tcga-brca")
    assert after.loss < before.loss
    assert before.metric == 0.5  # zero weights tie every pair
    assert (after.metric_name, after.samples) == ("c_index", 248)


def test_balanced_loss_is_used_for_ecg(data_dir: Path) -> None:
    site: SiteData = load_all_sites("mitbih-ecg", data_dir)[4]  # record 106, a quarter PVCs
    x, y = site.test_x, site.test_y
    weights = initial_weights([site], 0)
    metrics = evaluate(weights, x, y, "mitbih-ecg")
    positives = dataclasses.replace(site, test_x=x[y == 1], test_y=y[y == 1])
    negatives = dataclasses.replace(site, test_x=x[y == 0], test_y=y[y == 0])
    mean_of_classes = (
        evaluate(weights, positives.test_x, positives.test_y, "mitbih-ecg").loss
        + evaluate(weights, negatives.test_x, negatives.test_y, "mitbih-ecg").loss
    ) / 2
    assert metrics.loss == pytest.approx(mean_of_classes, rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["tcga-brca", "mitbih-ecg"])
def test_simulator_runs_every_method(
    dataset: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "result.json"
    assert main(["--dataset", dataset, "--rounds", "1", "--seeds", "0", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    for method in ("FedAvg", "Local only", "Pooled"):
        assert f"{method}: mean over seeds" in printed
    assert "Pooled (FLamby eval)" not in printed  # no per-site standardisation to undo


def test_simulator_runs_csv_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    files = [str(p) for p in _csv_files(tmp_path)]
    args = ["--dataset", "csv", "--csv", *files, "--csv-label", "outcome", "--rounds", "2"]
    assert main([*args, "--seeds", "0"]) == 0
    printed = capsys.readouterr().out
    assert "metric: accuracy" in printed and "Pooled (FLamby eval)" in printed
