"""A site's learning between rounds: strategies, local layers and the statistics round."""

from __future__ import annotations

import numpy as np
import pytest

from node.aggregation import apply_delta, fedavg
from node.data import SiteData
from node.errors import AggregationError, InvalidStrategyState, NodeError
from node.learner import SiteLearner
from node.simulate import initial_weights
from node.standardise import (
    MEAN,
    MEAN_SQUARE,
    federation_standardiser,
    restandardise,
    site_moments,
)
from node.strategies import StrategyConfig
from node.strategy_sim import run_strategy
from node.training import TrainingConfig, choose_finetune_steps, evaluate, finetune
from node.weights import Weights, weights_hash

ADAGRAD = StrategyConfig("fedadagrad", server_lr=0.1, tau=0.1)
LOCAL_BIAS = StrategyConfig("fedavg", local_layers=("linear.bias",))


def learners(
    sites: tuple[SiteData, ...], strategy: StrategyConfig, statistics: bool = False
) -> list[SiteLearner]:
    genesis = initial_weights(list(sites), 0)
    return [
        SiteLearner(site, TrainingConfig(), strategy, 0, genesis, federation_statistics=statistics)
        for site in sites
    ]


def play_round(group: list[SiteLearner], round_number: int) -> Weights:
    """One round as the nodes play it: two clusters, then the clusters' aggregates."""
    updates = [learner.train(round_number) for learner in group]
    clusters = [updates[:2], updates[2:]]
    aggregates = [(fedavg(c), sum(n for _, n in c)) for c in clusters]
    new_global = group[0].next_global(aggregates, len(group))
    for learner in group:
        assert weights_hash(learner.next_global(aggregates, len(group))) == weights_hash(new_global)
        learner.adopt(new_global, round_number)
    return new_global


def test_the_statistics_round_moves_no_model_and_standardises_every_site(
    heart_sites: tuple[SiteData, ...],
) -> None:
    group = learners(heart_sites, StrategyConfig(), statistics=True)
    before = dict(group[0].shared)
    update, samples = group[0].train(1)
    assert sorted(update) == [MEAN, MEAN_SQUARE] and samples == heart_sites[0].n_train
    new_global = play_round(group, 1)
    assert sorted(new_global) == [MEAN, MEAN_SQUARE, "linear.bias", "linear.weight"]
    for name in before:
        assert new_global[name].tobytes() == before[name].tobytes()
    pooled = fedavg([(site_moments(s), s.n_train) for s in heart_sites])  # one flat average
    standardiser = federation_standardiser(pooled, 13)
    assert standardiser is not None
    expected = [restandardise(site, *standardiser) for site in heart_sites]
    for learner, site in zip(group, expected, strict=True):
        np.testing.assert_allclose(learner.site.train_x, site.train_x, atol=1e-4)
    # round 2 trains; its aggregate carries no statistics and the blob keeps them
    second = play_round(group, 2)
    assert second[MEAN].tobytes() == new_global[MEAN].tobytes()
    assert second["linear.weight"].tobytes() != new_global["linear.weight"].tobytes()


def test_updates_of_the_wrong_kind_for_the_round_are_refused(
    heart_sites: tuple[SiteData, ...],
) -> None:
    group = learners(heart_sites, StrategyConfig(), statistics=True)
    moments, _ = group[1].train(1)
    model_delta = {n: np.zeros_like(a) for n, a in group[1].shared.items()}
    with pytest.raises(AggregationError, match="round 1 update"):
        group[0].with_update(model_delta, 1)
    group[0].with_update(moments, 1)
    with pytest.raises(AggregationError, match="round 2 update"):
        group[0].with_update(moments, 2)
    with pytest.raises(AggregationError, match="holds model tensors"):
        group[0].next_global([(model_delta, 10)], 4)


def test_statistics_outside_round_one_are_refused(heart_sites: tuple[SiteData, ...]) -> None:
    group = learners(heart_sites, StrategyConfig())
    moments = {MEAN: np.zeros(13, np.float32), MEAN_SQUARE: np.ones(13, np.float32)}
    with pytest.raises(AggregationError):
        group[0].next_global([(moments, 10)], 4)


def test_an_adaptive_blob_lets_a_fresh_node_continue_bit_for_bit(
    heart_sites: tuple[SiteData, ...],
) -> None:
    group = learners(heart_sites, ADAGRAD)
    for round_number in (1, 2):
        blob = play_round(group, round_number)
    assert {n for n in blob if n.startswith("server/")} == {
        "server/m/linear.bias",
        "server/m/linear.weight",
        "server/v/linear.bias",
        "server/v/linear.weight",
    }
    # a node that missed rounds 1-2 adopts the finalized blob and computes round 3 alike
    late = learners(heart_sites, ADAGRAD)
    for learner in late:
        learner.adopt(blob, 2)
    assert weights_hash(play_round(late, 3)) == weights_hash(play_round(group, 3))


def test_a_blob_with_server_state_does_not_fit_a_plain_strategy(
    heart_sites: tuple[SiteData, ...],
) -> None:
    group = learners(heart_sites, ADAGRAD)
    blob = play_round(group, 1)
    plain = learners(heart_sites, StrategyConfig())[0]
    with pytest.raises(InvalidStrategyState, match="adaptive"):
        plain.adopt(blob, 1)


def test_local_layers_stay_on_the_site(heart_sites: tuple[SiteData, ...]) -> None:
    group = learners(heart_sites, LOCAL_BIAS)
    update, _ = group[0].train(1)
    assert sorted(update) == ["linear.weight"]
    genesis_bias = group[0].local["linear.bias"].copy()
    blob = play_round(group, 1)
    assert sorted(blob) == ["linear.weight"]
    assert group[0].local["linear.bias"].tobytes() != genesis_bias.tobytes()
    biases = {learner.local["linear.bias"].tobytes() for learner in group}
    assert len(biases) == 4  # every site has its own
    model = group[0].model()
    assert sorted(model) == ["linear.bias", "linear.weight"]
    moved = group[0].with_update(update, 2)
    np.testing.assert_array_equal(
        moved["linear.weight"], apply_delta(group[0].shared, update)["linear.weight"]
    )


def test_learners_played_as_nodes_give_the_in_memory_strategy_run(
    heart_sites: tuple[SiteData, ...],
) -> None:
    strategy = StrategyConfig(
        "fedadagrad", server_lr=0.1, tau=0.1, local_layers=("linear.bias",), finetune_steps=5
    )
    group = learners(heart_sites, strategy, statistics=True)
    rounds = 4
    for round_number in range(1, rounds + 1):
        blob = play_round(group, round_number)
    personal = [learner.score(blob, rounds).personal for learner in group]
    expected = run_strategy(heart_sites, TrainingConfig(), strategy, rounds, 0, "federation")
    for got, want in zip(personal, expected.personal_scores, strict=True):
        assert got is not None
        assert got.metric == pytest.approx(want.accuracy, abs=1e-9)


def test_saved_local_layers_must_fit_the_strategy(heart_sites: tuple[SiteData, ...]) -> None:
    learner = learners(heart_sites, LOCAL_BIAS)[0]
    learner.restore_kept({"linear.bias": np.array([0.5], np.float32)})
    assert learner.model()["linear.bias"].tolist() == [0.5]
    with pytest.raises(NodeError, match=r"delete the state directory's checkpoint\.json"):
        learner.restore_kept({"linear.weight": np.zeros((1, 13), np.float32)})


def test_statistics_that_cannot_standardise_are_refused(heart_sites: tuple[SiteData, ...]) -> None:
    learner = learners(heart_sites, StrategyConfig(), statistics=True)[0]
    lying = {MEAN: np.zeros(13, np.float32), MEAN_SQUARE: -np.ones(13, np.float32)}
    with pytest.raises(AggregationError, match=r"round 1 update: .*negative"):
        learner.with_update(lying, 1)
    with pytest.raises(AggregationError, match=r"pooled statistics: .*negative"):
        learner.next_global([(lying, 10)], 4)


def test_scaffold_played_as_nodes_gives_the_in_memory_run(
    heart_sites: tuple[SiteData, ...],
) -> None:
    strategy = StrategyConfig("scaffold", server_lr=0.5, local_layers=("linear.bias",))
    group = learners(heart_sites, strategy, statistics=True)
    for round_number in range(1, 5):
        blob = play_round(group, round_number)
    assert sorted(n for n in blob if n.startswith("scaffold/")) == ["scaffold/c/linear.weight"]
    update, _ = group[0].train(5)
    assert sorted(update) == ["linear.weight", "variate/linear.weight"]
    personal = [learner.score(blob, 4).personal for learner in group]
    expected = run_strategy(
        heart_sites, TrainingConfig(), strategy, 4, 0, "federation", clusters=(0, 0, 1, 1)
    )
    for got, want in zip(personal, expected.personal_scores, strict=True):
        assert got is not None
        assert got.metric == pytest.approx(want.accuracy, abs=1e-9)
    # what a site keeps: its intercept and its variate, restorable after a restart
    kept = group[1].kept_on_site()
    assert sorted(kept) == ["linear.bias", "variate/linear.weight"]
    fresh = learners(heart_sites, strategy, statistics=True)[1]
    fresh.restore_kept(kept)
    assert fresh.kept_on_site().keys() == kept.keys()
    assert fresh.variate["linear.weight"].tobytes() == group[1].variate["linear.weight"].tobytes()


def test_variate_changes_outside_scaffold_are_refused(heart_sites: tuple[SiteData, ...]) -> None:
    scaffold = learners(heart_sites, StrategyConfig("scaffold"))
    plain = learners(heart_sites, StrategyConfig())
    update, samples = scaffold[0].train(1)
    with pytest.raises(AggregationError, match="round 1 update"):
        plain[0].with_update(update, 1)
    with pytest.raises(AggregationError, match="variate changes do not fit"):
        plain[0].next_global([(update, samples)], 4)
    bare = {n: v for n, v in update.items() if not n.startswith("variate/")}
    with pytest.raises(AggregationError, match="variate changes do not fit"):
        scaffold[0].next_global([(bare, samples)], 4)


def test_a_site_scores_the_fine_tuning_its_cross_validation_chose(
    heart_sites: tuple[SiteData, ...],
) -> None:
    strategy = StrategyConfig(
        local_layers=("linear.bias",), finetune_steps=50, finetune_select=True
    )
    group = learners(heart_sites, strategy)
    blob = play_round(group, 1)
    for learner in group:
        scores = learner.score(blob, 1)
        mine = learner.model()
        chosen = choose_finetune_steps(mine, learner.site, learner.training, 50, learner.seed)
        assert scores.finetune_steps == chosen
        tuned = finetune(mine, learner.site, learner.training, chosen, 0) if chosen else mine
        want = evaluate(tuned, learner.site.test_x, learner.site.test_y)
        assert scores.personal == want
    # after one round the shared model is still poor: some site must have chosen to fine-tune
    assert any(learner.score(blob, 1).finetune_steps > 0 for learner in group)


@pytest.mark.parametrize(
    ("strategy", "statistics"),
    [(StrategyConfig(), True), (StrategyConfig("scaffold"), False), (LOCAL_BIAS, False)],
)
def test_the_update_layout_is_what_training_returns(
    heart_sites: tuple[SiteData, ...], strategy: StrategyConfig, statistics: bool
) -> None:
    learner = learners(heart_sites[:1], strategy, statistics)[0]
    for round_number in (1, 2):
        update, _ = learner.train(round_number)
        assert learner.update_layout(round_number) == {n: v.shape for n, v in update.items()}
        learner.adopt(learner.next_global([(update, 1)], 1), round_number)
