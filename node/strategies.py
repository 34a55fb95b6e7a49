"""Federated strategies as pure functions of weight arrays (numpy only: no I/O, no torch).

The menu, chosen with a :class:`StrategyConfig`:

- ``fedavg``: the next global model is ``x + server_lr * d``, where ``d`` is the
  sample-weighted mean delta of :func:`node.aggregation.fedavg`; ``server_lr = 1`` gives
  exactly :func:`node.aggregation.apply_delta`'s result.
- ``fedprox``: clients add ``proximal_mu / 2 * ||w - x||^2`` to their loss (Li et al.,
  "Federated Optimization in Heterogeneous Networks", 2020); the server step is FedAvg's.
- ``fedadam``, ``fedyogi``, ``fedadagrad``: ``d`` is a pseudo-gradient for an adaptive
  server optimizer (Reddi et al., "Adaptive Federated Optimization", 2021), see
  :class:`ServerOptimizer`.
- ``scaffold``: control variates correct every local gradient step (Karimireddy et al.,
  "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning", 2020), see
  :func:`scaffold_correction`, :func:`client_variate_update` and
  :func:`server_variate_update`.

Personalisation combines with any of them: ``local_layers`` names tensors that each site keeps
to itself and never sends (as FedBN keeps its batch-norm layers local; :func:`split_local`,
:func:`merge_local`), and ``finetune_steps`` local steps from the global model come before a
site evaluates.

Arithmetic is float64 and elementwise, results are float32: every node that applies the same
sequence of aggregates derives the same bytes and the same optimizer state.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from node.aggregation import check_same_layout, checked_wide, narrow
from node.errors import AggregationError, InvalidStrategyConfig, InvalidStrategyState
from node.weights import WeightArray, Weights

Float64Array = npt.NDArray[np.float64]

StrategyName = Literal["fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "scaffold"]
STRATEGIES: tuple[StrategyName, ...] = (
    "fedavg",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "scaffold",
)
ADAPTIVE_STRATEGIES: frozenset[str] = frozenset({"fedadam", "fedyogi", "fedadagrad"})


def _is_real(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass(frozen=True)
class StrategyConfig:
    """A strategy from the menu and its parameters, validated on construction.

    ``server_lr`` scales every server step. ``beta1``, ``beta2`` and ``tau`` (the adaptivity
    epsilon) are used by the adaptive strategies only (``beta2`` not by FedAdagrad).
    ``proximal_mu`` is FedProx's coefficient and must be positive for ``fedprox`` and 0 for
    the others. ``local_layers`` are tensor names kept local; ``finetune_steps`` local steps
    personalise the global model before evaluation, or, with ``finetune_select``, at most
    that many, as each site's cross-validation on its own training rows chooses
    (:func:`node.training.choose_finetune_steps`); ``finetune_mu`` keeps fine-tuning near the
    hospital's model with a proximal term (Ditto). Bad values raise
    :class:`~node.errors.InvalidStrategyConfig` naming every offending field.
    """

    name: StrategyName = "fedavg"
    server_lr: float = 1.0
    beta1: float = 0.9
    beta2: float = 0.99
    tau: float = 1e-3
    proximal_mu: float = 0.0
    local_layers: tuple[str, ...] = ()
    finetune_steps: int = 0
    finetune_select: bool = False
    finetune_mu: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if self.name not in STRATEGIES:
            problems.append(f"name must be one of {list(STRATEGIES)}, got {self.name!r}")
        if not (_is_real(self.server_lr) and self.server_lr > 0):
            problems.append(f"server_lr must be a positive finite number, got {self.server_lr!r}")
        for field in ("beta1", "beta2"):
            value = getattr(self, field)
            if not (_is_real(value) and 0 <= value < 1):
                problems.append(f"{field} must be a number in [0, 1), got {value!r}")
        if not (_is_real(self.tau) and self.tau > 0):
            problems.append(f"tau must be a positive finite number, got {self.tau!r}")
        if not (_is_real(self.proximal_mu) and self.proximal_mu >= 0):
            problems.append(f"proximal_mu must be a finite number >= 0, got {self.proximal_mu!r}")
        elif self.name == "fedprox" and self.proximal_mu == 0:
            problems.append("proximal_mu must be > 0 for fedprox (with 0 it is fedavg)")
        elif self.name != "fedprox" and self.proximal_mu != 0:
            problems.append(f"proximal_mu applies to fedprox only; set it to 0 for {self.name!r}")
        if not (
            isinstance(self.local_layers, tuple)
            and all(isinstance(n, str) and n for n in self.local_layers)
            and len(set(self.local_layers)) == len(self.local_layers)
        ):
            problems.append(
                "local_layers must be a tuple of distinct non-empty tensor names, "
                f"got {self.local_layers!r}"
            )
        if not (
            isinstance(self.finetune_steps, int)
            and not isinstance(self.finetune_steps, bool)
            and self.finetune_steps >= 0
        ):
            problems.append(f"finetune_steps must be an integer >= 0, got {self.finetune_steps!r}")
        if not isinstance(self.finetune_select, bool):
            problems.append(f"finetune_select must be true or false, got {self.finetune_select!r}")
        elif self.finetune_select and self.finetune_steps == 0:
            problems.append(
                "finetune_select chooses up to finetune_steps steps: set finetune_steps > 0"
            )
        if not (_is_real(self.finetune_mu) and self.finetune_mu >= 0):
            problems.append(f"finetune_mu must be a finite number >= 0, got {self.finetune_mu!r}")
        elif self.finetune_mu > 0 and self.finetune_steps == 0:
            problems.append("finetune_mu shapes fine-tuning: set finetune_steps > 0 as well")
        if problems:
            raise InvalidStrategyConfig("invalid strategy config: " + "; ".join(problems))

    @property
    def adaptive(self) -> bool:
        """Whether the server step is FedAdam, FedYogi or FedAdagrad."""
        return self.name in ADAPTIVE_STRATEGIES

    @property
    def personalised(self) -> bool:
        """Whether sites evaluate their own model rather than the global one."""
        return bool(self.local_layers) or self.finetune_steps > 0

    def server_parameters(self) -> dict[str, Any]:
        """The fields the server step depends on, as saved with its state."""
        return {
            "beta1": float(self.beta1),
            "beta2": float(self.beta2),
            "name": self.name,
            "server_lr": float(self.server_lr),
            "tau": float(self.tau),
        }


def _elementwise(
    where: str,
    combine: Callable[..., Float64Array],
    *operands: Mapping[str, WeightArray],
) -> Weights:
    """Apply ``combine`` to the operands' float64 tensors, name by name; float32 results."""
    if not operands[0]:
        raise AggregationError(f"{where}: no tensors")
    for other in operands[1:]:
        check_same_layout(operands[0], other, where)
    return {
        name: narrow(name, combine(*(checked_wide(name, o[name], where) for o in operands)), where)
        for name in sorted(operands[0])
    }


# --- server optimizer -----------------------------------------------------------------------

STATE_MAGIC = b"MSSO"
STATE_VERSION = 1
STATE_DTYPE = "<f8"
MAX_STATE_HEADER_BYTES = 1024 * 1024
_STATE_PREFIX = struct.Struct("<4sHI")


def _canonical_json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


class ServerOptimizer:
    """A strategy's server step and the state it carries from round to round.

    :meth:`step` turns the global weights ``x`` and the round's mean delta ``d`` into the
    next global weights. FedAvg, FedProx and SCAFFOLD step ``x + server_lr * d``. The
    adaptive strategies follow Reddi et al. (2021), Algorithm 2, with ``m = 0`` and
    ``v = tau^2`` before the first round and no bias correction::

        m <- beta1 * m + (1 - beta1) * d
        v <- v + d^2                                   (FedAdagrad)
        v <- v - (1 - beta2) * d^2 * sign(v - d^2)     (FedYogi)
        v <- beta2 * v + (1 - beta2) * d^2             (FedAdam)
        x <- x + server_lr * m / (sqrt(v) + tau)

    The state (``m``, ``v``, rounded to float32 after every step but held and saved as
    float64, and the number of steps taken) depends only on the
    sequence of mean deltas, so every node that applies the same aggregates holds the same
    state. :meth:`state_bytes` and :meth:`restore` save and recover it; :meth:`state_hash`
    lets nodes compare.
    """

    def __init__(self, config: StrategyConfig) -> None:
        self.config = config
        self._steps = 0
        self._m: dict[str, Float64Array] = {}
        self._v: dict[str, Float64Array] = {}

    @property
    def steps(self) -> int:
        """How many server steps this optimizer has taken."""
        return self._steps

    def moments(self) -> tuple[dict[str, Float64Array], dict[str, Float64Array]]:
        """Copies of the first and second moments ``(m, v)`` (empty before an adaptive step)."""
        return (
            {n: a.copy() for n, a in self._m.items()},
            {n: a.copy() for n, a in self._v.items()},
        )

    def step(
        self, global_weights: Mapping[str, WeightArray], mean_delta: Mapping[str, WeightArray]
    ) -> Weights:
        """Return the next global weights; the state moves on only if this succeeds."""
        where = "server step"
        if not global_weights:
            raise AggregationError(f"{where}: the global weights have no tensors")
        check_same_layout(global_weights, mean_delta, where)
        x = {n: checked_wide(n, global_weights[n], where) for n in sorted(global_weights)}
        d = {n: checked_wide(n, mean_delta[n], where) for n in sorted(global_weights)}
        lr = float(self.config.server_lr)
        if not self.config.adaptive:
            new = {n: narrow(n, x[n] + lr * d[n], where) for n in x}
            self._steps += 1
            return new
        if self._m:
            check_same_layout(self._m, x, f"{where} (against the optimizer state)")
        tau = float(self.config.tau)
        beta1, beta2 = float(self.config.beta1), float(self.config.beta2)
        m_new: dict[str, Float64Array] = {}
        v_new: dict[str, Float64Array] = {}
        new = {}
        for n in x:
            m = self._m.get(n, np.zeros_like(x[n]))
            v = self._v.get(n, np.full_like(x[n], tau * tau))
            square = d[n] * d[n]
            m_new[n] = beta1 * m + (1.0 - beta1) * d[n]
            if self.config.name == "fedadagrad":
                v_new[n] = v + square
            elif self.config.name == "fedyogi":
                v_new[n] = v - (1.0 - beta2) * square * np.sign(v - square)
            else:
                v_new[n] = beta2 * v + (1.0 - beta2) * square
            # Kept at float32 precision, so the moments travel exactly in the global model's
            # blob (with_server_state) and a node that reads them back steps bit-identically.
            m_new[n] = narrow(f"{n} (first moment)", m_new[n], where).astype(np.float64)
            v_new[n] = narrow(f"{n} (second moment)", v_new[n], where).astype(np.float64)
            new[n] = narrow(n, x[n] + lr * m_new[n] / (np.sqrt(v_new[n]) + tau), where)
        self._m, self._v = m_new, v_new
        self._steps += 1
        return new

    def state_bytes(self) -> bytes:
        """Return the state's one canonical encoding.

        ``MSSO``, format version (uint16 LE = 1), header length ``H`` (uint32 LE), an ASCII
        JSON header ``{"config":…,"dtype":"<f8","steps":…,"tensors":[[name,[dims…]],…]}``
        (keys sorted, no whitespace, tensors sorted by name), then every ``m`` tensor and
        every ``v`` tensor in header order as little-endian float64, C order.
        """
        names = sorted(self._m)
        header = _canonical_json(
            {
                "config": self.config.server_parameters(),
                "dtype": STATE_DTYPE,
                "steps": self._steps,
                "tensors": [[n, list(self._m[n].shape)] for n in names],
            }
        )
        body = b"".join(
            np.ascontiguousarray(state[n], dtype=STATE_DTYPE).tobytes()
            for state in (self._m, self._v)
            for n in names
        )
        return _STATE_PREFIX.pack(STATE_MAGIC, STATE_VERSION, len(header)) + header + body

    def state_hash(self) -> str:
        """Lowercase hex SHA-256 of :meth:`state_bytes`: equal on nodes in agreement."""
        return hashlib.sha256(self.state_bytes()).hexdigest()

    @classmethod
    def restore(cls, config: StrategyConfig, data: bytes) -> ServerOptimizer:
        """Rebuild the optimizer saved by :meth:`state_bytes` under the same ``config``.

        Raises :class:`~node.errors.InvalidStrategyState` for anything
        :meth:`state_bytes` would not produce, or for state saved under other server
        parameters.
        """
        header, body = _split_state(data)
        expected = config.server_parameters()
        saved = header["config"]
        if saved != expected:
            fields = sorted(
                k for k in expected.keys() | saved.keys() if saved.get(k) != expected.get(k)
            )
            raise InvalidStrategyState(
                f"optimizer state was saved with other server parameters ({fields}): "
                f"saved {saved}, configured {expected}"
            )
        tensors = _parse_tensors(header["tensors"])
        steps = header["steps"]
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise InvalidStrategyState(
                f"optimizer state: steps must be an integer >= 0, got {steps!r}"
            )
        if tensors and not config.adaptive:
            raise InvalidStrategyState(f"optimizer state: {config.name} keeps no moments")
        if config.adaptive and bool(tensors) != (steps > 0):
            raise InvalidStrategyState(
                "optimizer state: moments must be present exactly when steps > 0"
            )
        sizes = [math.prod(shape) for _, shape in tensors]
        if len(body) != 2 * 8 * sum(sizes):
            raise InvalidStrategyState(
                f"optimizer state: body has {len(body)} bytes, expected {2 * 8 * sum(sizes)}"
            )
        values = np.frombuffer(body, dtype=STATE_DTYPE).astype(np.float64)
        if not np.isfinite(values).all():
            raise InvalidStrategyState("optimizer state holds NaN or infinite values")
        optimizer = cls(config)
        offset = 0
        for state in (optimizer._m, optimizer._v):
            for (name, shape), size in zip(tensors, sizes, strict=True):
                state[name] = values[offset : offset + size].reshape(shape).copy()
                offset += size
        if any((v <= 0).any() for v in optimizer._v.values()):
            raise InvalidStrategyState("optimizer state: second moments must be positive")
        optimizer._steps = steps
        return optimizer


SERVER_STATE_PREFIX = "server/"
"""Tensor names under which a global model's blob carries the server optimizer's moments:
``server/m/<tensor>`` and ``server/v/<tensor>`` (model tensor names never contain ``/``)."""


def with_server_state(model: Mapping[str, WeightArray], optimizer: ServerOptimizer) -> Weights:
    """Return the global blob's tensors: ``model`` and, once an adaptive step was taken,
    the optimizer's moments, so that the hash the members attest commits to both."""
    moments = {}
    for kind, state in zip("mv", optimizer.moments(), strict=True):
        for name, values in state.items():
            moments[f"{SERVER_STATE_PREFIX}{kind}/{name}"] = values.astype(np.float32)
    merged = {**model, **moments}
    return {name: merged[name] for name in sorted(merged)}


def split_server_state(
    weights: Mapping[str, WeightArray], config: StrategyConfig, steps: int
) -> tuple[Weights, ServerOptimizer]:
    """Return ``(model, optimizer)`` from a global blob's tensors (see
    :func:`with_server_state`); ``steps`` is how many server steps made it.

    Raises :class:`~node.errors.InvalidStrategyState` if the moments do not fit ``config``
    or the model: then the blob was made under another strategy.
    """
    model = {n: weights[n] for n in sorted(weights) if not n.startswith(SERVER_STATE_PREFIX)}
    state = {n: weights[n] for n in weights if n.startswith(SERVER_STATE_PREFIX)}
    optimizer = ServerOptimizer(config)
    optimizer._steps = steps
    if not state:
        return model, optimizer
    if not config.adaptive:
        raise InvalidStrategyState(
            f"the global model carries server optimizer state, but {config.name} keeps none: "
            "it was made under an adaptive strategy (strategy.name in the config)"
        )
    expected = {f"{SERVER_STATE_PREFIX}{kind}/{n}" for kind in "mv" for n in model}
    if set(state) != expected:
        raise InvalidStrategyState(
            "the global model's server state does not cover exactly its tensors: "
            f"has {sorted(state)}, expected {sorted(expected)}"
        )
    for name in model:
        m = np.asarray(state[f"{SERVER_STATE_PREFIX}m/{name}"], dtype=np.float64)
        v = np.asarray(state[f"{SERVER_STATE_PREFIX}v/{name}"], dtype=np.float64)
        if m.shape != np.shape(model[name]) or v.shape != np.shape(model[name]):
            raise InvalidStrategyState(f"server state for {name!r} has the wrong shape")
        if not (np.isfinite(m).all() and np.isfinite(v).all() and (v > 0).all()):
            raise InvalidStrategyState(
                f"server state for {name!r} must be finite with positive second moments"
            )
        optimizer._m[name], optimizer._v[name] = m, v
    return model, optimizer


def _split_state(data: bytes) -> tuple[dict[str, Any], bytes]:
    if not isinstance(data, bytes | bytearray) or len(data) < _STATE_PREFIX.size:
        raise InvalidStrategyState("optimizer state is shorter than its fixed prefix")
    magic, version, header_length = _STATE_PREFIX.unpack_from(data)
    if magic != STATE_MAGIC:
        raise InvalidStrategyState(
            f"optimizer state starts with {magic!r}, expected {STATE_MAGIC!r}"
        )
    if version != STATE_VERSION:
        raise InvalidStrategyState(
            f"optimizer state format version {version} is not supported (only {STATE_VERSION})"
        )
    end = _STATE_PREFIX.size + header_length
    if header_length > MAX_STATE_HEADER_BYTES or end > len(data):
        raise InvalidStrategyState(f"optimizer state header length {header_length} is invalid")
    raw = bytes(data[_STATE_PREFIX.size : end])
    try:
        header = json.loads(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidStrategyState(f"optimizer state header is not ASCII JSON: {error}") from None
    if (
        not isinstance(header, dict)
        or set(header) != {"config", "dtype", "steps", "tensors"}
        or header["dtype"] != STATE_DTYPE
        or not isinstance(header["config"], dict)
        or _canonical_json(header) != raw
    ):
        raise InvalidStrategyState("optimizer state header is not in canonical form")
    return header, bytes(data[end:])


def _parse_tensors(entries: object) -> list[tuple[str, tuple[int, ...]]]:
    if not isinstance(entries, list):
        raise InvalidStrategyState("optimizer state: tensors must be a list")
    tensors = []
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and entry[0]
            and isinstance(entry[1], list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry[1])
        ):
            raise InvalidStrategyState(f"optimizer state: bad tensor entry {entry!r}")
        tensors.append((entry[0], tuple(entry[1])))
    names = [name for name, _ in tensors]
    if names != sorted(set(names)):
        raise InvalidStrategyState("optimizer state: tensor names must be sorted and distinct")
    return tensors


# --- SCAFFOLD -------------------------------------------------------------------------------


def zero_variate(weights: Mapping[str, WeightArray]) -> Weights:
    """Return a control variate of zeros shaped like ``weights`` (SCAFFOLD's start)."""
    return {name: np.zeros(np.shape(weights[name]), dtype=np.float32) for name in sorted(weights)}


def scaffold_correction(
    server_variate: Mapping[str, WeightArray], client_variate: Mapping[str, WeightArray]
) -> Weights:
    """Return ``c - c_i``, the term SCAFFOLD adds to every local gradient."""
    return _elementwise("scaffold correction", np.subtract, server_variate, client_variate)


def client_variate_update(
    client_variate: Mapping[str, WeightArray],
    server_variate: Mapping[str, WeightArray],
    global_weights: Mapping[str, WeightArray],
    local_weights: Mapping[str, WeightArray],
    steps: int,
    lr: float,
) -> Weights:
    """Return the client's new variate, option II: ``c_i - c + (x - y_i) / (steps * lr)``.

    ``x`` is the global model the client started from, ``y_i`` its model after ``steps``
    corrected SGD steps of size ``lr``.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise AggregationError(f"client variate: steps must be a positive integer, got {steps!r}")
    if not (_is_real(lr) and lr > 0):
        raise AggregationError(f"client variate: lr must be a positive finite number, got {lr!r}")
    scale = 1.0 / (steps * float(lr))

    def update(
        c_i: Float64Array, c: Float64Array, x: Float64Array, y: Float64Array
    ) -> Float64Array:
        return c_i - c + (x - y) * scale

    return _elementwise(
        "client variate", update, client_variate, server_variate, global_weights, local_weights
    )


def server_variate_update(
    server_variate: Mapping[str, WeightArray],
    variate_deltas: Sequence[Mapping[str, WeightArray]],
    total_clients: int,
) -> Weights:
    """Return ``c + |S|/N * mean(dc_i) = c + sum(dc_i) / N`` over the participants ``S``.

    ``variate_deltas`` are the participants' ``c_i(new) - c_i(old)`` (in one agreed order)
    and ``total_clients`` is ``N``; with every client's variate starting at zero, ``c`` stays
    the plain mean of all clients' variates.
    """
    where = "server variate"
    if not variate_deltas:
        raise AggregationError(f"{where}: needs at least one variate delta, got none")
    if (
        isinstance(total_clients, bool)
        or not isinstance(total_clients, int)
        or total_clients < len(variate_deltas)
    ):
        raise AggregationError(
            f"{where}: total_clients must be an integer >= the {len(variate_deltas)} "
            f"participants, got {total_clients!r}"
        )

    def update(c: Float64Array, *deltas: Float64Array) -> Float64Array:
        total = np.zeros_like(c)
        for dc in deltas:
            total = total + dc
        return c + total / float(total_clients)

    return _elementwise(where, update, server_variate, *variate_deltas)


def variate_change_per_sample(
    old: Mapping[str, WeightArray], new: Mapping[str, WeightArray], samples: int
) -> Weights:
    """Return ``(c_i(new) - c_i(old)) / samples``: what a node sends with its update so that
    the rounds' sample-weighted averaging yields ``sum(dc_i) / sum(n_i)`` (see
    :func:`server_variate_step`)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise AggregationError(f"variate change: samples must be >= 1, got {samples!r}")
    return _elementwise("variate change", lambda o, n: (n - o) / float(samples), old, new)


def server_variate_step(
    server_variate: Mapping[str, WeightArray],
    mean_change_per_sample: Mapping[str, WeightArray],
    total_samples: int,
    total_clients: int,
) -> Weights:
    """Return ``c + mean * total_samples / total_clients = c + sum(dc_i) / N``.

    ``mean`` is the sample-weighted mean of the participants' :func:`variate_change_per_sample`
    (flat or in the nodes' two tiers), ``total_samples`` their samples and ``total_clients``
    the federation's members: the same step as :func:`server_variate_update`, formed from
    what the nodes average anyway.
    """
    if total_samples < 1 or total_clients < 1:
        raise AggregationError(
            f"server variate: need samples and clients >= 1, got {total_samples}, {total_clients}"
        )
    factor = float(total_samples) / float(total_clients)
    return _elementwise(
        "server variate", lambda c, m: c + m * factor, server_variate, mean_change_per_sample
    )


# --- personalisation ------------------------------------------------------------------------


def split_local(
    weights: Mapping[str, WeightArray], local_layers: Sequence[str]
) -> tuple[Weights, Weights]:
    """Return ``(shared, local)``: ``local`` holds the tensors named in ``local_layers``.

    The shared part is what a site sends and aggregates; the local part never leaves it.
    Arrays are not copied.
    """
    unknown = sorted(set(local_layers) - set(weights))
    if unknown:
        raise InvalidStrategyConfig(
            f"local_layers names tensors the model does not have: {unknown}; "
            f"its tensors are {sorted(weights)}"
        )
    if set(local_layers) == set(weights):
        raise InvalidStrategyConfig(
            "local_layers keeps every tensor local, so nothing would be shared; "
            "leave at least one tensor out"
        )
    keep = set(local_layers)
    shared = {name: weights[name] for name in sorted(weights) if name not in keep}
    local = {name: weights[name] for name in sorted(weights) if name in keep}
    return shared, local


def merge_local(shared: Mapping[str, WeightArray], local: Mapping[str, WeightArray]) -> Weights:
    """Return one site's full model: the shared tensors and its own local ones."""
    overlap = sorted(set(shared) & set(local))
    if overlap:
        raise AggregationError(f"merge_local: tensors both shared and local: {overlap}")
    merged = {**shared, **local}
    return {name: merged[name] for name in sorted(merged)}
