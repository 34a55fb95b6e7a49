"""The models each data set trains, built deterministically from a seed.

A data set's :class:`~node.data.types.TaskSpec` names its model; ``MODEL_BUILDERS`` maps
the name to a builder. Every model maps a ``(batch, n_features)`` float32 input to one
output per sample, shape ``(batch,)``: a logit for binary tasks, a log-risk score for
survival.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional

from node.data import task_spec
from node.errors import UnknownDataset

# Layers are built on the meta device and materialised uninitialised, so construction draws
# nothing from the global generator; build_model sets every value from its own generator.
_META = torch.device("meta")


class LogisticRegression(nn.Module):
    """A linear layer giving one logit per sample; ``sigmoid(logit)`` is P(label = 1)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1, device=_META)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape ``(batch,)``."""
        logits: torch.Tensor = self.linear(x).squeeze(-1)
        return logits


class WideMlp(nn.Module):
    """Three hidden layers of ``hidden_units`` (ReLU) and one logit: a binary task, any size.

    Used to load the network with big updates (``training.hidden_units``): a node's
    traffic, memory and round time grow with the model while the task stays the same.
    """

    def __init__(self, n_features: int, hidden_units: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_features, hidden_units, device=_META)
        self.middle = nn.Linear(hidden_units, hidden_units, device=_META)
        self.last = nn.Linear(hidden_units, hidden_units, device=_META)
        self.out = nn.Linear(hidden_units, 1, device=_META)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape ``(batch,)``."""
        x = torch.relu(self.hidden(x))
        x = torch.relu(self.middle(x))
        x = torch.relu(self.last(x))
        logits: torch.Tensor = self.out(x).squeeze(-1)
        return logits


def hidden_units_for(n_features: int, parameters: int) -> int:
    """The width of a :class:`WideMlp` with about ``parameters`` parameters."""
    # 2 w^2 + (n_features + 4) w + 1 parameters
    b = n_features + 4
    return max(1, int((-b + math.sqrt(b * b + 8 * max(parameters - 1, 0))) / 4))


class CoxLinear(nn.Module):
    """Cox proportional hazards: log-hazard ratio ``w . x``, a linear layer without bias.

    A bias would cancel out of the partial likelihood, so it is left out.
    """

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_features, 1, bias=False, device=_META)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the log-risk scores, shape ``(batch,)``."""
        risk: torch.Tensor = self.linear(x).squeeze(-1)
        return risk


class EcgCnn(nn.Module):
    """A small 1-D CNN classifying one heartbeat window (one channel) with one logit.

    Three convolution blocks (16, 32, 32 channels; kernels 7, 5, 5, the first with stride 2;
    ReLU; max-pool by 2) then a 32-unit hidden layer. For the 234-sample beat window (the
    first block halves it to 90 Hz resolution, ample for QRS shape) it has 22,273 parameters.
    No batch normalisation or dropout, so the weights are the whole state and training
    draws randomness only from its seeded batch order.
    """

    def __init__(self, n_samples: int) -> None:
        super().__init__()
        length = ((n_samples - 1) // 2 + 1) // 8  # after the strided conv and three pools
        if length < 1:
            raise ValueError(f"EcgCnn needs windows of at least 15 samples, got {n_samples}")
        self.conv1 = nn.Conv1d(1, 16, kernel_size=7, stride=2, padding=3, device=_META)
        self.conv2 = nn.Conv1d(16, 32, kernel_size=5, padding=2, device=_META)
        self.conv3 = nn.Conv1d(32, 32, kernel_size=5, padding=2, device=_META)
        self.hidden = nn.Linear(32 * length, 32, device=_META)
        self.output = nn.Linear(32, 1, device=_META)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits, shape ``(batch,)``, for windows of shape ``(batch, samples)``."""
        h = x.unsqueeze(1)
        for conv in (self.conv1, self.conv2, self.conv3):
            h = functional.max_pool1d(functional.relu(conv(h)), 2)
        h = functional.relu(self.hidden(h.flatten(1)))
        logits: torch.Tensor = self.output(h).squeeze(-1)
        return logits


def _init_uniform(model: nn.Module, generator: torch.Generator) -> None:
    """Initialise like PyTorch's default for linear and convolution layers, from ``generator``.

    Every weight and bias of a layer is uniform in ``±1/sqrt(fan_in)`` (``fan_in`` = inputs
    per output unit), drawn layer by layer in the order the layers were defined.
    """
    with torch.no_grad():
        for layer in model.modules():
            if not isinstance(layer, nn.Linear | nn.Conv1d):
                continue
            fan_in = layer.weight[0].numel()
            bound = 1.0 / math.sqrt(fan_in)
            for tensor in (layer.weight, layer.bias):
                if tensor is not None:
                    values = torch.rand(tensor.shape, generator=generator)
                    tensor.copy_(values * (2 * bound) - bound)


def _seeded(model: nn.Module, seed: int) -> nn.Module:
    model.to_empty(device="cpu")
    _init_uniform(model, torch.Generator().manual_seed(seed))
    return model


MODEL_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "logistic-regression": lambda n, seed: _seeded(LogisticRegression(n), seed),
    "cox-linear": lambda n, seed: _seeded(CoxLinear(n), seed),
    "ecg-cnn": lambda n, seed: _seeded(EcgCnn(n), seed),
}
"""Model name -> builder of ``(n_features, seed)``."""


def build_model(
    dataset: str, n_features: int, seed: int, hidden_units: int = 0, initialise: bool = True
) -> nn.Module:
    """Return the model of ``dataset``'s task, initialised from ``seed`` alone.

    ``hidden_units > 0`` replaces a logistic regression by a :class:`WideMlp` of that width.
    ``initialise=False`` leaves the values undefined, for a caller that loads weights next.
    Equal arguments give bit-identical weights, and the global random state is not touched.
    Raises :class:`UnknownDataset` if ``dataset`` is not a known data set.
    """
    model_name = task_spec(dataset).model
    if hidden_units:
        if model_name != "logistic-regression":
            raise ValueError(
                f"training.hidden_units widens the logistic regression of binary tasks; "
                f"{dataset!r} uses {model_name!r}: set hidden_units = 0"
            )
        wide = WideMlp(n_features, hidden_units)
        return _seeded(wide, seed) if initialise else wide.to_empty(device="cpu")
    if model_name not in MODEL_BUILDERS:
        known = ", ".join(sorted(MODEL_BUILDERS))
        raise UnknownDataset(f"{dataset!r} names the model {model_name!r}; models: {known}")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, got {n_features!r}")
    return MODEL_BUILDERS[model_name](n_features, seed)
