"""FedAvg built as updates arrive: a running sum, in place. Pure numpy, no I/O.

:func:`node.aggregation.fedavg` takes every update at once. A cluster's aggregator gets its
members' updates one by one, over the network; :class:`RunningMean` adds each into a float32
running sum as it comes, so the aggregator holds one model however many members there are,
and an update can be dropped as soon as it is added. Its arithmetic is fedavg's, operation
for operation (:func:`~node.aggregation.add_weighted`: ``float32(n) * u`` added to the sum
chunk by chunk in cache, then :func:`~node.aggregation.divide_finite`), so the same updates
added in the same order give the same bytes, and so the same hash, as fedavg: the members
that check an aggregate recompute it with fedavg. Per value added, memory sees the update
read once and the sum read and written once, as in a plain ``numpy.add``. As in fedavg, the
mean of a single update with samples is that update exactly, so the first such update is
kept, by reference, until a second one comes.

Floating-point addition is not associative: updates added in another order can give other
last bits. :class:`OrderedRunningMean` therefore adds updates in the agreed order (members
sorted by address) whatever order they arrive in; one that comes early waits, by
reference, until every update before it has been added or dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from node.aggregation import CHUNK, add_weighted, check_same_layout, divide_finite, sole_update
from node.errors import AggregationError
from node.weights import WeightArray, Weights, shape_of

Float32Array = npt.NDArray[np.float32]


class RunningMean:
    """The sample-weighted mean ``sum(n_i * u_i) / sum(n_i)`` of updates added one at a time
    (see the module docstring)."""

    def __init__(self) -> None:
        self._sums: dict[str, Float32Array] = {}
        self._layout: dict[str, Float32Array] = {}  # empty arrays of each shape
        self._scratch = np.empty(CHUNK, dtype=np.float32)
        # the one update with samples so far (None once there are two): fedavg's sole_update
        self._only: Mapping[str, WeightArray] | None = None
        self._weighted = 0
        self.samples = 0
        self.count = 0

    def add(self, update: Mapping[str, WeightArray], samples: int) -> None:
        """Add ``samples * update`` to the running sum (in place).

        Raises :class:`~node.errors.AggregationError` for a bad sample count, a non-floating
        tensor or a layout other than the first update's (then nothing is added).
        """
        where = f"running mean: update {self.count}"
        if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 0:
            raise AggregationError(
                f"{where}: samples must be a non-negative integer, got {samples!r}"
            )
        if not self._sums:
            if not update:
                raise AggregationError(f"{where} has no tensors")
            for name in sorted(update):
                self._sums[name] = np.zeros(shape_of(update, name), dtype=np.float32)
                self._layout[name] = np.empty(shape_of(update, name), dtype=np.float32)
        check_same_layout(self._layout, update, where)
        for name in self._sums:
            tensor = update[name]
            if not isinstance(tensor, np.ndarray) or tensor.dtype.kind != "f":
                raise AggregationError(f"{where}: tensor {name!r} is not a floating-point array")
        for name in sorted(self._sums):
            flat = update[name].reshape(-1)
            add_weighted(self._sums[name].reshape(-1), flat, samples, self._scratch)
        if samples > 0:
            self._weighted += 1
            self._only = update if self._weighted == 1 else None
        self.samples += int(samples)
        self.count += 1

    def mean(self) -> Weights:
        """The mean of everything added, as float32 tensors (the running sum is kept).

        Raises :class:`~node.errors.AggregationError` if nothing was added, the samples add
        up to zero, or a value is not finite.
        """
        if not self.count:
            raise AggregationError("running mean: no update was added")
        if self.samples == 0:
            raise AggregationError("running mean: the updates' sample counts add up to zero")
        result: Weights = {}
        for name, total in self._sums.items():
            mean = np.empty_like(total)
            if not divide_finite(total.reshape(-1), self.samples, mean.reshape(-1)):
                raise AggregationError(
                    f"running mean: tensor {name!r} holds NaN or infinity, or overflows float32"
                )
            result[name] = mean if self._only is None else sole_update(self._only[name])
        return result


class OrderedRunningMean:
    """A :class:`RunningMean` that adds updates in the order of ``keys`` (sorted), whichever
    order they are offered in; see the module docstring."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._order = sorted(set(keys))
        self._next = 0
        self._waiting: dict[str, tuple[Mapping[str, WeightArray], int] | None] = {}
        self.added: list[str] = []
        self.running = RunningMean()

    def offer(self, key: str, update: Mapping[str, WeightArray], samples: int) -> None:
        """Take ``key``'s update: add it, and any kept behind it, now if every key before it
        is settled, else keep it until they are (blocking: the arithmetic runs here)."""
        self._settle(key, (update, samples))
        self._advance(add=True)

    def drop(self, key: str) -> None:
        """``key``'s update will not be part of the mean (no arithmetic here: updates kept
        behind it are added by the next :meth:`offer` or by :meth:`finish`)."""
        self._settle(key, None)
        self._advance(add=False)

    def offered(self) -> list[str]:
        """The keys whose updates were offered (added, or waiting to be), sorted."""
        waiting = [key for key, item in self._waiting.items() if item is not None]
        return sorted([*self.added, *waiting])

    def finish(self, keys: Sequence[str]) -> Weights:
        """The mean of the updates of ``keys`` (which must be exactly the ones offered and
        not dropped): what is still waiting is added in order, keys never offered skipped.

        Raises :class:`~node.errors.AggregationError` if ``keys`` differ from what was added.
        """
        for key in self._order[self._next :]:
            item = self._waiting.pop(key, None)
            if item is not None:
                self._add(key, item)
        self._next = len(self._order)
        if sorted(keys) != self.added:
            raise AggregationError(
                f"running mean: added the updates of {self.added}, asked for {sorted(keys)}"
            )
        return self.running.mean()

    def _settle(self, key: str, item: tuple[Mapping[str, WeightArray], int] | None) -> None:
        if key not in self._order[self._next :] or key in self._waiting:
            raise AggregationError(f"running mean: {key!r} is not an unsettled key")
        self._waiting[key] = item

    def _advance(self, add: bool) -> None:
        """Move past the settled keys at the front, adding their updates (only dropped ones
        when ``add`` is false)."""
        while self._next < len(self._order) and self._order[self._next] in self._waiting:
            ready = self._order[self._next]
            if self._waiting[ready] is not None and not add:
                return
            taken = self._waiting.pop(ready)
            if taken is not None:
                self._add(ready, taken)
            self._next += 1

    def _add(self, key: str, item: tuple[Mapping[str, WeightArray], int]) -> None:
        self.running.add(*item)
        self.added.append(key)
