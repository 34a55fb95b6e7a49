"""Local training and evaluation on one site's data, deterministic given a seed.

The model, loss and metric come from the data set's task (:func:`node.data.task_spec`):
logistic regression with cross-entropy scored by accuracy for Fed-Heart-Disease and CSV
files, a Cox model with the partial likelihood scored by the C-index for Fed-TCGA-BRCA, and
a 1-D CNN with class-balanced cross-entropy scored by balanced accuracy for MIT-BIH ECG.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from node.data import SiteData, task_spec
from node.data.types import FloatArray
from node.errors import InvalidStrategyConfig, InvalidTrainingConfig
from node.losses import make_loss
from node.metrics import METRICS
from node.model import build_model
from node.strategies import StrategyConfig
from node.weights import WeightArray, Weights, load_weights_into, state_dict_to_weights

_PREDICT_BATCH = 4096  # samples per forward pass when predicting, to bound memory

OptimizerName = Literal["sgd", "adam"]
OPTIMIZERS: tuple[OptimizerName, ...] = ("sgd", "adam")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one round of local training.

    The local budget is either ``local_steps`` mini-batch updates or ``local_epochs`` passes
    over the site's training data: set exactly one of them (the other to ``None``). The
    defaults were chosen on validation splits of Fed-Heart-Disease; other data sets
    recommend their own (:func:`default_training_config`, docs/learning.md).
    ``proximal_mu > 0`` adds FedProx's term ``mu/2 * ||w - w_global||^2`` to the loss.
    """

    lr: float = 0.1
    local_steps: int | None = 20
    local_epochs: int | None = None
    batch_size: int = 16
    optimizer: OptimizerName = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    proximal_mu: float = 0.0
    hidden_units: int = 0  # > 0: a one-hidden-layer MLP of this width instead of the linear model

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be a positive finite number, got {self.lr!r}")
        if (self.local_steps is None) == (self.local_epochs is None):
            problems.append(
                "set exactly one of local_steps and local_epochs (the other to None), got "
                f"local_steps={self.local_steps!r}, local_epochs={self.local_epochs!r}"
            )
        for name in ("local_steps", "local_epochs"):
            value = getattr(self, name)
            if value is not None and not (_is_int(value) and value >= 1):
                problems.append(f"{name} must be a positive integer or None, got {value!r}")
        if not (_is_int(self.batch_size) and self.batch_size >= 1):
            problems.append(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if not (_is_int(self.hidden_units) and self.hidden_units >= 0):
            problems.append(f"hidden_units must be an integer >= 0, got {self.hidden_units!r}")
        for name in ("weight_decay", "proximal_mu"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number >= 0, got {value!r}")
        if not (isinstance(self.momentum, int | float) and 0 <= self.momentum < 1):
            problems.append(f"momentum must be in [0, 1), got {self.momentum!r}")
        elif self.momentum and self.optimizer != "sgd":
            problems.append("momentum applies to the sgd optimizer only; set it to 0 for adam")
        if problems:
            raise InvalidTrainingConfig("invalid training config: " + "; ".join(problems))

    def steps_for(self, n_samples: int) -> int:
        """Return the number of mini-batch updates one round makes on ``n_samples`` samples."""
        if self.local_steps is not None:
            return self.local_steps
        assert self.local_epochs is not None  # guaranteed by __post_init__
        return self.local_epochs * math.ceil(n_samples / self.batch_size)


@dataclass(frozen=True, eq=False)
class LocalResult:
    """The outcome of local training: new weights, samples trained on, mean mini-batch loss."""

    weights: Weights
    samples: int
    train_loss: float


def default_training_config(dataset: str) -> TrainingConfig:
    """Return the hyper-parameters recommended for ``dataset`` (chosen on validation data)."""
    return TrainingConfig(**task_spec(dataset).training)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Metrics:
    """A model's scores on ``samples`` samples.

    ``loss`` is the task's loss on them (binary cross-entropy, class-balanced for ECG; the
    Cox negative partial log-likelihood per event for survival). ``metric`` is the task's
    headline score, named by ``metric_name``: ``"accuracy"``, ``"balanced_accuracy"`` or
    ``"c_index"``. ``accuracy`` is the fraction of correct predictions (logit > 0) for binary
    tasks and NaN for survival, which predicts no labels.
    """

    loss: float
    accuracy: float
    samples: int
    metric_name: str
    metric: float


def derive_seed(*parts: int | str) -> int:
    """Return a seed in ``[0, 2**63)`` derived from ``parts`` (e.g. run seed, round, site).

    The same parts give the same seed on every machine and Python version.
    """
    text = "\x1f".join(f"{type(p).__name__}:{p}" for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _model_with(
    dataset: str, weights: Mapping[str, WeightArray], n_features: int
) -> torch.nn.Module:
    model = build_model(dataset, n_features, 0, _hidden_units(dataset, weights), initialise=False)
    load_weights_into(model, weights)
    return model


def _hidden_units(dataset: str, weights: Mapping[str, WeightArray]) -> int:
    # A widened binary model (training.hidden_units) is known by its layout.
    wide = task_spec(dataset).model == "logistic-regression" and "middle.weight" in weights
    return int(weights["middle.weight"].shape[0]) if wide else 0


_ModelKey = tuple[str, int, int]
_spare_models: dict[_ModelKey, torch.nn.Module] = {}
_spare_models_lock = threading.Lock()


@contextlib.contextmanager
def _evaluation_model(
    dataset: str, weights: Mapping[str, WeightArray], n_features: int
) -> Iterator[torch.nn.Module]:
    """A model holding ``weights`` for inference, reused from the last call of its shape:
    building a large model costs about as much as running it on a site's data."""
    key = (dataset, n_features, _hidden_units(dataset, weights))
    with _spare_models_lock:
        model = _spare_models.pop(key, None)
    if model is None:
        model = build_model(dataset, n_features, 0, key[2], initialise=False)
    load_weights_into(model, weights)
    model.eval()
    try:
        yield model
    finally:
        with _spare_models_lock:
            _spare_models[key] = model


def _correction_terms(
    model: torch.nn.Module, correction: Mapping[str, WeightArray] | None
) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
    if correction is None:
        return []
    names = [name for name, _ in model.named_parameters()]
    if sorted(correction) != sorted(names):
        raise ValueError(f"gradient_correction names {sorted(correction)}, expected {names}")
    terms = []
    for name, parameter in model.named_parameters():
        term = torch.tensor(np.asarray(correction[name], dtype=np.float32))
        if term.shape != parameter.shape:
            raise ValueError(
                f"gradient_correction[{name!r}] has shape {tuple(term.shape)}, "
                f"expected {tuple(parameter.shape)}"
            )
        terms.append((parameter, term))
    return terms


def train_local(
    global_weights: Mapping[str, WeightArray],
    site_data: SiteData,
    config: TrainingConfig,
    seed: int,
    gradient_correction: Mapping[str, WeightArray] | None = None,
) -> LocalResult:
    """Train from ``global_weights`` on ``site_data``'s training split.

    Mini-batches are drawn by reshuffling the training rows at the start of every pass, from a
    private generator seeded with ``seed``: equal inputs give bit-identical weights, and the
    global random state is left alone. Thread count is the caller's choice.
    ``gradient_correction`` (a tensor per parameter) is added to every mini-batch gradient,
    as SCAFFOLD's ``c - c_i`` (:mod:`node.strategies`).
    """
    n = site_data.n_train
    if n == 0:
        raise ValueError(f"site {site_data.site!r} has no training samples")
    model = _model_with(site_data.dataset, global_weights, site_data.n_features)
    loss_fn = make_loss(task_spec(site_data.dataset).loss, site_data.train_y)
    # FedProx's anchor: a copy of the starting parameters, only when the proximal term is on.
    anchors = [p.detach().clone() for p in model.parameters()] if config.proximal_mu > 0 else []
    corrections = _correction_terms(model, gradient_correction)
    x = torch.tensor(site_data.train_x)
    y = torch.tensor(site_data.train_y)
    generator = torch.Generator().manual_seed(seed)
    optimizer: torch.optim.Optimizer
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    steps = config.steps_for(n)
    loss_sum = 0.0
    order = torch.empty(0, dtype=torch.int64)
    position = n
    model.train()
    for _ in range(steps):
        if position >= n:
            order, position = torch.randperm(n, generator=generator), 0
        batch = order[position : position + config.batch_size]
        position += config.batch_size
        loss = loss_fn(model(x[batch]), y[batch])
        loss_sum += float(loss.detach())
        if config.proximal_mu > 0:
            drift = sum(
                ((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchors, strict=True)
            )
            loss = loss + 0.5 * config.proximal_mu * drift
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        for parameter, correction in corrections:
            assert parameter.grad is not None  # set by backward()
            parameter.grad += correction
        optimizer.step()
    del optimizer, anchors, corrections  # free their state before copying the weights out
    model.zero_grad(set_to_none=True)
    return LocalResult(weights=state_dict_to_weights(model), samples=n, train_loss=loss_sum / steps)


def site_training_config(training: TrainingConfig, strategy: StrategyConfig) -> TrainingConfig:
    """Return the local training configuration ``strategy`` asks of every site."""
    if strategy.name == "fedprox":
        return dataclasses.replace(training, proximal_mu=strategy.proximal_mu)
    if strategy.name == "scaffold" and (training.optimizer != "sgd" or training.momentum != 0):
        raise InvalidStrategyConfig(
            "scaffold's variate update assumes plain SGD: use optimizer 'sgd' with momentum 0"
        )
    return training


def finetune(
    weights: Mapping[str, WeightArray],
    site: SiteData,
    config: TrainingConfig,
    steps: int,
    seed: int,
    mu: float = 0.0,
) -> Weights:
    """Return ``weights`` after ``steps`` local steps on ``site``; ``mu > 0`` adds the term
    ``mu/2 * ||w - weights||^2``, which keeps the site's model near the one it started from
    (Ditto's personal objective)."""
    tune = dataclasses.replace(config, local_steps=steps, local_epochs=None, proximal_mu=mu)
    return train_local(weights, site, tune, derive_seed(seed, "finetune", site.site)).weights


FINETUNE_GRID = (10, 20, 50, 100, 200, 500, 1000)
"""Step counts :func:`choose_finetune_steps` tries (those up to its limit, and the limit)."""
FINETUNE_FOLDS = 4


def choose_finetune_steps(
    weights: Mapping[str, WeightArray],
    site: SiteData,
    config: TrainingConfig,
    max_steps: int,
    seed: int,
    mu: float = 0.0,
    folds: int = FINETUNE_FOLDS,
) -> int:
    """Return how many fine-tuning steps (0 to ``max_steps``) suit ``site``, by cross-validation.

    The site's training rows are cut into ``folds`` parts (a shuffle seeded from ``seed`` and
    the site); each step count in ``(0, *FINETUNE_GRID up to max_steps, max_steps)`` fine-tunes
    ``weights`` (with the proximal ``mu`` of :func:`finetune`) on all parts but one and is
    scored on the part left out. The count with the best
    mean metric wins (ties: lower mean loss, then fewer steps). The test split is never read.
    ``weights`` have usually seen every training row in federated training, so the held-out
    part flatters 0 steps: fine-tuning is chosen only where it beats the shared model clearly.
    A site with fewer than ``2 * folds`` training rows gets 0.
    """
    if max_steps <= 0 or site.n_train < 2 * folds:
        return 0
    order = np.random.RandomState(derive_seed(seed, "finetune-folds", site.site) % 2**32)
    parts = np.array_split(order.permutation(site.n_train), folds)
    candidates = sorted({0, *(k for k in FINETUNE_GRID if k < max_steps), max_steps})
    ranked = []
    for steps in candidates:
        metrics, losses = [], []
        for held in parts:
            kept = np.setdiff1d(np.arange(site.n_train), held)
            part = dataclasses.replace(
                site,
                train_x=site.train_x[kept],
                train_y=site.train_y[kept],
                test_x=site.train_x[np.sort(held)],
                test_y=site.train_y[np.sort(held)],
            )
            tuned = finetune(weights, part, config, steps, seed, mu) if steps else weights
            scored = evaluate(tuned, part.test_x, part.test_y, site.dataset)
            metrics.append(scored.metric)
            losses.append(scored.loss)
        metric = float(np.nanmean(metrics)) if not np.all(np.isnan(metrics)) else -math.inf
        ranked.append((-metric, float(np.mean(losses)), steps))
    return min(ranked)[2]


def predict(
    weights: Mapping[str, WeightArray], x: FloatArray, dataset: str = "heart-disease"
) -> FloatArray:
    """Return the raw outputs (logits or log-risk scores) of ``dataset``'s model for ``x``."""
    inputs = torch.tensor(np.asarray(x, dtype=np.float32))
    with _evaluation_model(dataset, weights, int(x.shape[1])) as model, torch.no_grad():
        parts = [model(inputs[i : i + _PREDICT_BATCH]) for i in range(0, len(x), _PREDICT_BATCH)]
    return torch.cat(parts).numpy().astype(np.float32)


def evaluate(
    weights: Mapping[str, WeightArray],
    x: FloatArray,
    y: FloatArray,
    dataset: str = "heart-disease",
) -> Metrics:
    """Return the loss and scores of the ``dataset`` model with ``weights`` on ``(x, y)``."""
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty set")
    task = task_spec(dataset)
    outputs = predict(weights, x, dataset)
    loss_fn = make_loss(task.loss, y)
    loss = loss_fn(torch.from_numpy(outputs), torch.tensor(np.asarray(y, dtype=np.float32)))
    accuracy = METRICS["accuracy"](outputs, y) if task.kind == "binary" else math.nan
    return Metrics(
        loss=float(loss),
        accuracy=accuracy,
        samples=len(x),
        metric_name=task.metric,
        metric=METRICS[task.metric](outputs, y),
    )
