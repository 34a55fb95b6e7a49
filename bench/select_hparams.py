"""Choose a data set's training hyper-parameters on validation data, never the test split.

Each site's training split is cut into 75% train / 25% validation, stratified on the label
(or the event indicator) so that rare classes and events land in both parts
(:func:`node.simulate.validation_view`). Every candidate runs FedAvg for the given rounds,
for each validation cut (``--cuts``) and training seed (``--seeds``), and candidates are
ranked by their mean validation metric over sites (FLamby's summary score). Run from the
project root, e.g. ``python bench/select_hparams.py --dataset tcga-brca``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import numpy as np
import torch

from node.data import TASKS, load_all_sites, resolve_data_dir
from node.simulate import run_fedavg, validation_view
from node.training import TrainingConfig

TCGA_CANDIDATES: tuple[TrainingConfig, ...] = (
    TrainingConfig(optimizer="sgd", lr=0.1, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.03, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.01, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.003, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.1, batch_size=16, local_steps=5),
    TrainingConfig(optimizer="sgd", lr=0.1, batch_size=16, local_steps=20, weight_decay=0.1),
    TrainingConfig(optimizer="sgd", lr=0.03, batch_size=64, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.1, batch_size=256, local_steps=5),
    TrainingConfig(optimizer="adam", lr=0.003, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="adam", lr=0.001, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="adam", lr=0.0003, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="adam", lr=0.001, batch_size=16, local_steps=20, weight_decay=0.1),
    TrainingConfig(optimizer="adam", lr=0.0001, batch_size=16, local_steps=20),
    TrainingConfig(optimizer="adam", lr=0.0003, batch_size=16, local_steps=50),
    TrainingConfig(optimizer="adam", lr=0.0003, batch_size=64, local_steps=20),
)
ECG_CANDIDATES: tuple[TrainingConfig, ...] = (
    TrainingConfig(optimizer="adam", lr=0.001, batch_size=64, local_steps=10),
    TrainingConfig(optimizer="adam", lr=0.003, batch_size=64, local_steps=10),
    TrainingConfig(optimizer="adam", lr=0.001, batch_size=32, local_steps=20),
    TrainingConfig(optimizer="adam", lr=0.003, batch_size=32, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.05, batch_size=64, local_steps=10, momentum=0.9),
    TrainingConfig(optimizer="sgd", lr=0.1, batch_size=32, local_steps=20),
    TrainingConfig(optimizer="sgd", lr=0.05, batch_size=64, local_steps=20, momentum=0.9),
    TrainingConfig(optimizer="sgd", lr=0.1, batch_size=64, local_steps=10, momentum=0.9),
    TrainingConfig(optimizer="sgd", lr=0.02, batch_size=64, local_steps=10, momentum=0.9),
)
CANDIDATES = {"tcga-brca": TCGA_CANDIDATES, "mitbih-ecg": ECG_CANDIDATES}


def main() -> None:
    """Print every candidate's validation metric per site and mean, best first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(CANDIDATES), required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cuts", type=int, nargs="+", default=[7], help="validation seeds")
    parser.add_argument(
        "--losses", nargs="+", default=None, help="also try these losses (default: the task's)"
    )
    parser.add_argument("--only", type=int, nargs="+", default=None, help="candidate indices")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sites = load_all_sites(args.dataset, resolve_data_dir(args.data_dir, os.environ))
    task = TASKS[args.dataset]
    views = {
        cut: tuple(validation_view(s, stratify=True, seed=cut) for s in sites) for cut in args.cuts
    }
    candidates = CANDIDATES[args.dataset]
    chosen = args.only if args.only is not None else range(len(candidates))
    rows = []
    for loss in args.losses or [task.loss]:
        TASKS[args.dataset] = dataclasses.replace(task, loss=loss)
        for index in chosen:
            config = candidates[index]
            start = time.perf_counter()
            runs = [
                run_fedavg(views[cut], config, args.rounds, seed)
                for cut in args.cuts
                for seed in args.seeds
            ]
            per_site = np.nanmean([[s.metric for s in r.scores] for r in runs], axis=0)
            mean = float(np.mean([r.mean_metric for r in runs]))
            seconds = (time.perf_counter() - start) / len(runs)
            rows.append((mean, per_site, seconds, loss, index, config))
            print(f"{mean:.4f} {loss} #{index} {seconds:.1f}s/run {config}", flush=True)
    TASKS[args.dataset] = task
    print(f"validation sizes (cut {args.cuts[0]}): {[s.n_test for s in views[args.cuts[0]]]}")
    print(f"rounds {args.rounds}, seeds {args.seeds}, cuts {args.cuts}; best first:")
    for mean, per_site, seconds, loss, index, config in sorted(rows, key=lambda r: -r[0]):
        sites_txt = " ".join(f"{a:.3f}" for a in per_site)
        print(f"{mean:.4f} [{sites_txt}] {seconds:5.1f}s/run {loss} #{index} {config}")


if __name__ == "__main__":
    main()
