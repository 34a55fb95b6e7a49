"""Choose Fed-Heart-Disease training hyper-parameters on validation data, never the test split.

Each site's training split is cut into 75% train / 25% validation
(:func:`node.simulate.validation_view`); every candidate runs 20 FedAvg rounds for seeds
0, 1, 2 and is ranked by mean validation accuracy over sites and seeds. Run from the project
root: ``python bench/select_heart_hparams.py [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from node.data import load_all_sites, resolve_data_dir
from node.simulate import run_fedavg, validation_view
from node.training import TrainingConfig

CANDIDATES: tuple[TrainingConfig, ...] = (
    TrainingConfig(optimizer="sgd", lr=0.001, batch_size=4, local_steps=100),  # FLamby's FedAvg
    TrainingConfig(optimizer="sgd", lr=0.01, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.05, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.1, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.5, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.05, batch_size=4, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.05, batch_size=16, local_steps=50),
    TrainingConfig(optimizer="sgd", lr=0.05, batch_size=16, local_steps=None, local_epochs=1),
    TrainingConfig(optimizer="sgd", lr=0.05, batch_size=16, local_steps=20, momentum=0.9),
    TrainingConfig(optimizer="sgd", lr=0.05, batch_size=16, local_steps=20, weight_decay=0.01),
    TrainingConfig(optimizer="adam", lr=0.001, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="adam", lr=0.01, batch_size=16, local_steps=20),
)
SEEDS = (0, 1, 2)
ROUNDS = 20


def main() -> None:
    """Print every candidate's validation accuracy, best first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sites = load_all_sites("heart-disease", resolve_data_dir(args.data_dir, os.environ))
    val_sites = tuple(validation_view(s) for s in sites)
    rows = []
    for config in CANDIDATES:
        start = time.perf_counter()
        runs = [run_fedavg(val_sites, config, ROUNDS, seed) for seed in SEEDS]
        per_site = np.mean([[s.accuracy for s in r.scores] for r in runs], axis=0)
        mean = float(np.mean([r.mean_accuracy for r in runs]))
        rows.append((mean, per_site, time.perf_counter() - start, config))
    print(f"validation sizes: {[s.n_test for s in val_sites]}")
    for mean, per_site, seconds, config in sorted(rows, key=lambda r: -r[0]):
        sites_txt = " ".join(f"{a:.3f}" for a in per_site)
        print(f"{mean:.4f} [{sites_txt}] {seconds / len(SEEDS):5.2f}s/run  {config}")


if __name__ == "__main__":
    main()
