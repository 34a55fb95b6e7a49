"""Local training and evaluation on one site's data, deterministic given a seed."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional

from node.data import SiteData
from node.data.types import FloatArray
from node.errors import InvalidTrainingConfig
from node.model import build_model
from node.weights import WeightArray, Weights, load_weights_into, state_dict_to_weights

OptimizerName = Literal["sgd", "adam"]
OPTIMIZERS: tuple[OptimizerName, ...] = ("sgd", "adam")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one round of local training.

    The local budget is either ``local_steps`` mini-batch updates or ``local_epochs`` passes
    over the site's training data: set exactly one of them (the other to ``None``). The
    defaults were chosen on validation splits of Fed-Heart-Disease (see docs/learning.md).
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


@dataclass(frozen=True)
class Metrics:
    """Mean binary cross-entropy and accuracy (threshold 0.5) on ``samples`` samples."""

    loss: float
    accuracy: float
    samples: int


def derive_seed(*parts: int | str) -> int:
    """Return a seed in ``[0, 2**63)`` derived from ``parts`` (e.g. run seed, round, site).

    The same parts give the same seed on every machine and Python version.
    """
    text = "\x1f".join(f"{type(p).__name__}:{p}" for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def _model_with(
    dataset: str, weights: Mapping[str, WeightArray], n_features: int
) -> torch.nn.Module:
    model = build_model(dataset, n_features, seed=0)
    load_weights_into(model, weights)
    return model


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
    anchors = [p.detach().clone() for p in model.parameters()]
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
        loss = functional.binary_cross_entropy_with_logits(model(x[batch]), y[batch])
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
    return LocalResult(weights=state_dict_to_weights(model), samples=n, train_loss=loss_sum / steps)


def evaluate(
    weights: Mapping[str, WeightArray],
    x: FloatArray,
    y: FloatArray,
    dataset: str = "heart-disease",
) -> Metrics:
    """Return the loss and accuracy of the ``dataset`` model with ``weights`` on ``(x, y)``."""
    if len(x) == 0:
        raise ValueError("cannot evaluate on an empty set")
    model = _model_with(dataset, weights, int(x.shape[1]))
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor(np.asarray(x, dtype=np.float32)))
        targets = torch.tensor(np.asarray(y, dtype=np.float32))
        loss = functional.binary_cross_entropy_with_logits(logits, targets)
        correct = ((logits > 0).float() == targets).sum()
    return Metrics(loss=float(loss), accuracy=float(correct) / len(x), samples=len(x))
