"""FedAvg built as updates arrive: a running sum, in place. Pure numpy, no I/O.

:func:`node.aggregation.fedavg` takes every update at once. A cluster's aggregator gets its
members' updates one by one, over the network; :class:`RunningMean` adds each into a float64
running sum as it comes, so the aggregator holds one model in float64 however many members
there are, and an update can be dropped as soon as it is added. Its arithmetic is fedavg's,
operation for operation (``float64(u) * n`` added to the sum, the sum divided by the total
samples, cast to float32), so the same updates added in the same order give the same bytes,
and so the same hash, as :func:`~node.aggregation.fedavg`: the members that check an
aggregate recompute it with fedavg.

Floating-point addition is not associative: updates added in another order can give other
last bits. :class:`OrderedRunningMean` therefore adds updates in the agreed order (members
sorted by address) whatever order they arrive in; one that comes early waits, by
reference, until every update before it has been added or dropped.

The arithmetic runs over chunks of :data:`CHUNK` values, so the float64 products stay in the
processor's cache instead of making a round trip through memory: per value added, memory sees
the float32 update read once and the float64 sum read and written once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from node.aggregation import check_same_layout
from node.errors import AggregationError
from node.weights import WeightArray, Weights, shape_of

CHUNK = 1 << 15  # values per step: 256 KiB of float64 products, in cache

Float64Array = npt.NDArray[np.float64]


class RunningMean:
    """The sample-weighted mean ``sum(n_i * u_i) / sum(n_i)`` of updates added one at a time
    (see the module docstring)."""

    def __init__(self) -> None:
        self._sums: dict[str, Float64Array] = {}
        self._layout: dict[str, npt.NDArray[np.float32]] = {}  # empty arrays of each shape
        self._scratch = np.empty(CHUNK)
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
                self._sums[name] = np.zeros(shape_of(update, name))
                self._layout[name] = np.empty(shape_of(update, name), dtype=np.float32)
        check_same_layout(self._layout, update, where)
        weight = float(samples)
        for name in sorted(self._sums):
            tensor = update[name]
            if not isinstance(tensor, np.ndarray) or tensor.dtype.kind != "f":
                raise AggregationError(f"{where}: tensor {name!r} is not a floating-point array")
            self._accumulate(self._sums[name].reshape(-1), tensor.reshape(-1), weight)
        self.samples += int(samples)
        self.count += 1

    def _accumulate(
        self, total: Float64Array, values: npt.NDArray[np.floating], weight: float
    ) -> None:
        for start in range(0, values.size, CHUNK):
            stop = min(values.size, start + CHUNK)
            product = self._scratch[: stop - start]
            np.copyto(product, values[start:stop])  # exact: float32 into float64
            product *= weight
            np.add(total[start:stop], product, out=total[start:stop])

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
        divisor = float(self.samples)
        for name, total in self._sums.items():
            mean = np.empty(total.shape, dtype=np.float32)
            flat_total, flat_mean = total.reshape(-1), mean.reshape(-1)
            for start in range(0, flat_total.size, CHUNK):  # divided in cache, then narrowed
                stop = min(flat_total.size, start + CHUNK)
                quotient = self._scratch[: stop - start]
                np.divide(flat_total[start:stop], divisor, out=quotient)
                with np.errstate(over="ignore"):  # beyond float32: infinity, refused below
                    np.copyto(flat_mean[start:stop], quotient, casting="same_kind")
            if not np.isfinite(mean).all():  # NaN or infinity added, or beyond float32
                raise AggregationError(
                    f"running mean: tensor {name!r} holds NaN or infinity, or overflows float32"
                )
            result[name] = mean
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
