"""The models each data set trains, built deterministically from a seed."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from node.data import DATASETS
from node.errors import UnknownDataset


class LogisticRegression(nn.Module):
    """A linear layer giving one logit per sample; ``sigmoid(logit)`` is P(label = 1)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        # Built on the meta device so construction draws nothing from the global generator;
        # the values are set by build_model from its own seeded generator.
        self.linear = nn.Linear(n_features, 1, device="meta").to_empty(device="cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape ``(batch,)``."""
        logits: torch.Tensor = self.linear(x).squeeze(-1)
        return logits


def _init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """Initialise like PyTorch's default (uniform in ±1/sqrt(fan_in)), from ``generator``."""
    bound = 1.0 / math.sqrt(layer.in_features)
    with torch.no_grad():
        for tensor in (layer.weight, layer.bias):
            tensor.copy_(torch.rand(tensor.shape, generator=generator) * (2 * bound) - bound)


def _logistic_regression(n_features: int, seed: int) -> nn.Module:
    model = LogisticRegression(n_features)
    _init_linear(model.linear, torch.Generator().manual_seed(seed))
    return model


MODEL_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "heart-disease": _logistic_regression,
}


def build_model(dataset: str, n_features: int, seed: int) -> nn.Module:
    """Return the model for ``dataset``, initialised from ``seed`` alone.

    Equal arguments give bit-identical weights, and the global random state is not touched.
    Raises :class:`UnknownDataset` if no model is defined for ``dataset``.
    """
    if dataset not in MODEL_BUILDERS:
        known = ", ".join(sorted(MODEL_BUILDERS))
        hint = "" if dataset in DATASETS else " (nor is it a known data set)"
        raise UnknownDataset(f"no model for data set {dataset!r}{hint}; models exist for: {known}")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    return MODEL_BUILDERS[dataset](n_features, seed)
