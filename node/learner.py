"""One hospital's side of the federation's learning, between rounds of the network.

A :class:`SiteLearner` holds what a node trains from and keeps: the global model it adopted
last (the blob the members attested, see below), and the site's own local layers when the
strategy keeps some (:func:`~node.strategies.split_local`). It turns them into the round's
update, computes the next global model from the clusters' aggregates with the strategy's
server step, and scores what the hospital ends the round with. No network, no chain: the
node (:mod:`node.hospital`) calls it from worker threads.

**The global blob.** Its tensors are the shared model and, under an adaptive strategy, the
server optimizer's moments (``server/m/...``, ``server/v/...``,
:func:`~node.strategies.with_server_state`). So the hash the quorum attests commits to the
optimizer state too, and a node that resyncs or restarts reads the state from the blob it
fetches instead of deriving it from rounds it did not see. The genesis blob is the full
initial model, local layers included; from round 1 on the blob holds the shared tensors only.
Under ``federation.standardise = "federation"`` round 1 is the statistics round of
:mod:`node.standardise`: updates carry the sites' feature moments instead of a model delta,
the model does not move, and the global blob carries the pooled moments (``data/``) from
then on.

**SCAFFOLD** keeps the server variate ``c`` in the global blob (``scaffold/c/<tensor>``,
absent while it is zero) and each site's variate ``c_i`` with its local layers. A site's
update carries, beside its delta, ``variate/<tensor>`` = ``(c_i(new) - c_i(old)) / n_i``;
averaged by samples like the delta (cluster, then clusters), that gives
``sum(dc_i) / sum(n_i)``, and every node steps ``c`` by it times ``sum(n_i) / N`` with ``N``
the federation's members (:func:`~node.strategies.server_variate_step`).

**Differential privacy.** With a :class:`~node.privacy.ClientPrivacy` the round's update is
clipped and noised before it leaves :meth:`SiteLearner.train`, and SCAFFOLD's variate change
is computed from the noised delta, so that it is post-processing of the private release
(see :mod:`node.privacy`). The statistics round's feature moments are sent as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from node.aggregation import apply_delta, check_same_layout, delta, fedavg
from node.data import SiteData
from node.errors import AggregationError, InvalidWeights, NodeError
from node.privacy import ClientPrivacy
from node.standardise import (
    MEAN,
    MEAN_SQUARE,
    data_part,
    federation_standardiser,
    restandardise,
    site_moments,
    without_data,
)
from node.strategies import (
    ServerOptimizer,
    StrategyConfig,
    client_variate_update,
    merge_local,
    scaffold_correction,
    server_variate_step,
    split_local,
    split_server_state,
    variate_change_per_sample,
    with_server_state,
    zero_variate,
)
from node.training import (
    Metrics,
    TrainingConfig,
    choose_finetune_steps,
    derive_seed,
    evaluate,
    finetune,
    site_training_config,
    train_local,
)
from node.weights import WeightArray, Weights

VARIATE = "variate/"  # in an update: a SCAFFOLD site's variate change per sample
SERVER_VARIATE = "scaffold/c/"  # in the global blob: SCAFFOLD's server variate


@dataclass(frozen=True)
class RoundScores:
    """What the hospital holds after a round, scored on its own test split.

    ``model`` is the global model merged with the site's local layers (the global model itself
    when there are none); ``personal`` is that model after the strategy's ``finetune_steps``
    local steps (with ``finetune_select``, the steps the site's cross-validation chose:
    ``finetune_steps``), or ``model`` again when only local layers personalise, or None when
    the strategy does not personalise.
    """

    model: Metrics
    personal: Metrics | None
    finetune_steps: int = 0


class SiteLearner:
    """A site's model state across rounds: see the module docstring."""

    def __init__(
        self,
        site: SiteData,
        training: TrainingConfig,
        strategy: StrategyConfig,
        seed: int,
        genesis: Mapping[str, WeightArray],
        federation_statistics: bool = False,
        combine: Callable[[Sequence[tuple[Mapping[str, WeightArray], int]]], Weights] = fedavg,
        privacy: ClientPrivacy | None = None,
    ) -> None:
        self.privacy = privacy  # clip and noise model updates (differential privacy)
        self.loaded_site = site  # as the loader standardised it
        self._combine = combine  # of the clusters' aggregates (model rounds; node/robust.py)
        self.site = site  # as the adopted global blob standardises it
        self.federation_statistics = federation_statistics
        self._standardised: tuple[bytes, SiteData] | None = None  # by the statistics' bytes
        self.strategy = strategy
        self.training = site_training_config(training, strategy)
        self.seed = seed
        shared, local = split_local(genesis, strategy.local_layers)
        self.global_tensors: Mapping[str, WeightArray] = genesis
        self.shared: Weights = shared
        self.local: Weights = local
        self._round = 0  # of the adopted global blob
        self._pending_local: dict[int, Weights] = {}
        self.scaffold = strategy.name == "scaffold"
        self.variate: Weights = zero_variate(shared) if self.scaffold else {}  # c_i
        self._pending_variate: dict[int, Weights] = {}

    def adopt(self, global_tensors: Mapping[str, WeightArray], round_number: int) -> None:
        """Make ``global_tensors`` (the blob finalized for ``round_number``) the start of the
        next round, with the local layers this site trained in that round if it did.

        Raises :class:`~node.errors.InvalidStrategyState` for a blob made under another
        strategy, :class:`~node.errors.InvalidWeights` for statistics that cannot standardise.
        """
        model = self._model_of(global_tensors, round_number)
        self.site = self._site_for(global_tensors)
        self.shared = self._shared_part(model)
        self.global_tensors = global_tensors
        self._round = round_number
        if round_number in self._pending_local:
            self.local = self._pending_local[round_number]
        if round_number in self._pending_variate:
            self.variate = self._pending_variate[round_number]
        self._pending_local = {r: w for r, w in self._pending_local.items() if r > round_number}
        self._pending_variate = {r: w for r, w in self._pending_variate.items() if r > round_number}

    def kept_on_site(self) -> Weights:
        """What the site keeps to itself across rounds: its local layers and, under SCAFFOLD,
        its variate (as ``variate/<tensor>``); saved beside the node's checkpoint."""
        kept = {**self.local, **{VARIATE + n: v for n, v in self.variate.items()}}
        return {name: kept[name] for name in sorted(kept)}

    def restore_kept(self, kept: Mapping[str, WeightArray]) -> None:
        """Take back what :meth:`kept_on_site` saved after an earlier round (after a restart)."""
        expected = {name: np.shape(values) for name, values in self.kept_on_site().items()}
        saved = {name: np.shape(values) for name, values in kept.items()}
        if saved != expected:
            raise NodeError(
                f"the saved local layers {saved} are not this strategy's {expected} "
                "(strategy.local_layers changed?); delete the state directory's "
                "checkpoint.json to start them over"
            )
        self.local = {n: v for n, v in kept.items() if not n.startswith(VARIATE)}
        self.variate = {n[len(VARIATE) :]: v for n, v in kept.items() if n.startswith(VARIATE)}

    def model(self, shared: Mapping[str, WeightArray] | None = None) -> Weights:
        """The site's full model: ``shared`` (by default the adopted one) and its local layers."""
        return merge_local(self.shared if shared is None else shared, self.local)

    def statistics_round(self, round_number: int) -> bool:
        """Whether ``round_number`` gathers feature statistics instead of training."""
        return self.federation_statistics and round_number == 1

    def train(self, round_number: int) -> tuple[Weights, int]:
        """Train the round's local model; return the update of the shared tensors and the
        number of samples. The new local layers wait for :meth:`adopt` of that round. Under
        differential privacy the update is clipped and noised (not in the statistics round)."""
        if self.statistics_round(round_number):
            self._pending_local[round_number] = self.local
            return site_moments(self.loaded_site), self.loaded_site.n_train
        seed = derive_seed(self.seed, "train", round_number - 1, self.site.site)
        correction = None
        if self.scaffold:
            c = self._server_variate(self.global_tensors)
            shared_term = scaffold_correction(c, self.variate)
            correction = merge_local(shared_term, zero_variate(self.local))
        result = train_local(
            self.model(), self.site, self.training, seed, gradient_correction=correction
        )
        trained, local = split_local(result.weights, self.strategy.local_layers)
        self._pending_local[round_number] = local
        update = delta(trained, self.shared)
        if self.privacy is not None:
            update = self.privacy.privatise(update, self.seed, round_number, self.site.site)
            trained = apply_delta(self.shared, update)  # what the announced update says
        if self.scaffold:
            steps = self.training.steps_for(self.site.n_train)
            new = client_variate_update(
                self.variate, c, self.shared, trained, steps, self.training.lr
            )
            self._pending_variate[round_number] = new
            change = variate_change_per_sample(self.variate, new, result.samples)
            update.update({VARIATE + n: v for n, v in change.items()})
        return update, result.samples

    def update_layout(self, round_number: int) -> dict[str, tuple[int, ...]]:
        """The names and shapes of the tensors a round's update holds (what :meth:`train`
        returns): the feature moments in the statistics round, else the shared tensors'
        delta, with SCAFFOLD's variate changes."""
        if self.statistics_round(round_number):
            n = self.loaded_site.n_features
            return {MEAN: (n,), MEAN_SQUARE: (n,)}
        shapes = {name: tuple(np.shape(value)) for name, value in self.shared.items()}
        if self.scaffold:
            shapes |= {VARIATE + name: shape for name, shape in shapes.items()}
        return shapes

    def with_update(self, update: Mapping[str, WeightArray], round_number: int) -> Weights:
        """The site's model if the shared tensors moved by ``update`` (to score an update).

        Raises :class:`~node.errors.AggregationError` (a ``ValueError``) if ``update`` is not
        what the round asks for: the shared tensors' delta, or in the statistics round the
        feature moments.
        """
        where = f"round {round_number} update"
        if self.statistics_round(round_number):
            n = self.loaded_site.n_features
            check_same_layout({MEAN: np.zeros(n), MEAN_SQUARE: np.zeros(n)}, update, where)
            try:
                federation_standardiser(update, self.loaded_site.n_features)
            except InvalidWeights as exc:
                raise AggregationError(f"{where}: {exc}") from exc
            return self.model()
        expected = {**self.shared, **{VARIATE + n: v for n, v in self.shared.items()}}
        check_same_layout(expected if self.scaffold else self.shared, update, where)
        step = {n: v for n, v in update.items() if not n.startswith(VARIATE)}
        return self.model(apply_delta(self.shared, step))

    def next_global(
        self, aggregates: Sequence[tuple[Mapping[str, WeightArray], int]], members: int
    ) -> Weights:
        """The next global blob: the strategy's server step over the sample-weighted mean of
        the clusters' aggregates (in the given order), with the optimizer state it leaves;
        ``members`` is the federation's size (SCAFFOLD's ``N``). Outside the statistics round
        the aggregates are combined by the learner's ``combine`` rule (FedAvg unless the
        federation chose a robust one)."""
        statistics_round = self.statistics_round(self._round + 1)
        mean = fedavg(aggregates) if statistics_round else self._combine(aggregates)
        statistics = data_part(self.global_tensors)
        variate = {n: v for n, v in self.global_tensors.items() if n.startswith(SERVER_VARIATE)}
        optimizer = self.optimizer()
        if statistics_round:
            if without_data(mean):
                raise AggregationError("the statistics round's aggregate holds model tensors")
            try:
                federation_standardiser(mean, self.loaded_site.n_features)
            except InvalidWeights as exc:
                raise AggregationError(f"the pooled statistics: {exc}") from exc
            statistics = mean  # the pooled moments; the model stays
            new = with_server_state(self.shared, optimizer)
        else:
            if data_part(mean):
                raise AggregationError("an aggregate outside round 1 holds data statistics")
            changes = {n[len(VARIATE) :]: v for n, v in mean.items() if n.startswith(VARIATE)}
            step = {n: v for n, v in mean.items() if not n.startswith(VARIATE)}
            if self.scaffold != bool(changes):
                raise AggregationError(
                    "the aggregate's variate changes do not fit the strategy: SCAFFOLD needs "
                    "them, every other strategy refuses them"
                )
            new = with_server_state(optimizer.step(self.shared, step), optimizer)
            if self.scaffold:
                total = sum(samples for _, samples in aggregates)
                c = self._server_variate(self.global_tensors)
                stepped = server_variate_step(c, changes, total, members)
                variate = {SERVER_VARIATE + n: v for n, v in stepped.items()}
        merged = {**new, **statistics, **variate}
        return {name: merged[name] for name in sorted(merged)}

    def score(self, global_tensors: Mapping[str, WeightArray], round_number: int) -> RoundScores:
        """Score the model this site holds once ``global_tensors`` ends ``round_number``."""
        model = self._model_of(global_tensors, round_number)
        local = self._pending_local.get(round_number, self.local)
        mine = merge_local(self._shared_part(model), local)
        site = self._site_for(global_tensors)
        metrics = evaluate(mine, site.test_x, site.test_y, site.dataset)
        steps, mu = self.strategy.finetune_steps, self.strategy.finetune_mu
        if steps and self.strategy.finetune_select:
            steps = choose_finetune_steps(mine, site, self.training, steps, self.seed, mu)
        if steps:
            tuned = finetune(mine, site, self.training, steps, self.seed, mu)
            personal = evaluate(tuned, site.test_x, site.test_y, site.dataset)
            return RoundScores(metrics, personal, steps)
        if self.strategy.finetune_steps:  # the site chose to keep its model as it is
            return RoundScores(metrics, metrics, 0)
        return RoundScores(metrics, metrics if self.strategy.local_layers else None)

    def server_variate(self) -> Weights:
        """SCAFFOLD's server variate ``c`` in the adopted global blob (zeros before the first
        step; empty under other strategies)."""
        return self._server_variate(self.global_tensors) if self.scaffold else {}

    def optimizer(self) -> ServerOptimizer:
        """The server optimizer as the adopted global blob leaves it (the statistics round
        takes no server step)."""
        steps = self._round - int(self.federation_statistics and self._round >= 1)
        return split_server_state(_core(self.global_tensors), self.strategy, steps)[1]

    def _model_of(self, global_tensors: Mapping[str, WeightArray], steps: int) -> Weights:
        """A global blob's model tensors (checking its optimizer state fits the strategy)."""
        return split_server_state(_core(global_tensors), self.strategy, steps)[0]

    def _server_variate(self, global_tensors: Mapping[str, WeightArray]) -> Weights:
        """SCAFFOLD's ``c`` from a global blob (zeros before the first step)."""
        stored = {
            n[len(SERVER_VARIATE) :]: v
            for n, v in global_tensors.items()
            if n.startswith(SERVER_VARIATE)
        }
        if not stored:
            return zero_variate(self.shared)
        check_same_layout(self.shared, stored, "the global blob's server variate")
        return stored

    def _site_for(self, global_tensors: Mapping[str, WeightArray]) -> SiteData:
        """The site's data standardised as ``global_tensors`` says (kept while it holds)."""
        statistics = data_part(global_tensors)
        key = b"".join(statistics[n].tobytes() for n in statistics)
        if self._standardised is not None and self._standardised[0] == key:
            return self._standardised[1]
        standardiser = federation_standardiser(statistics, self.loaded_site.n_features)
        if standardiser is None:
            return self.loaded_site
        site = restandardise(self.loaded_site, *standardiser)
        self._standardised = (key, site)
        return site

    def _shared_part(self, model: Mapping[str, WeightArray]) -> Weights:
        keep = set(self.strategy.local_layers)
        return {name: model[name] for name in sorted(model) if name not in keep}


def _core(tensors: Mapping[str, WeightArray]) -> Weights:
    """A global blob's model and server-optimizer tensors (no statistics, no server variate)."""
    return {n: v for n, v in without_data(tensors).items() if not n.startswith(SERVER_VARIATE)}
