"""Client-level differential privacy: clipping, noise, its keys and seeds, and the learner's
private updates (SCAFFOLD's variate change from the noised delta)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from node.accountant import RdpAccountant
from node.data import SiteData
from node.errors import PrivacyError
from node.learner import VARIATE, SiteLearner
from node.privacy import (
    ClientPrivacy,
    add_noise,
    clip_update,
    member_noise_key,
    noise_generator,
    privacy_spent,
    update_norm,
)
from node.simulate import initial_weights
from node.standardise import MEAN, MEAN_SQUARE
from node.strategies import StrategyConfig
from node.strategy_sim import run_strategy
from node.training import TrainingConfig
from node.weights import Weights, weights_hash


def update(*values: list[float]) -> Weights:
    """Tensors "a" (a row) and "b" (the rest), float32."""
    return {
        "a": np.array([values[0]], dtype=np.float32),
        "b": np.array(values[1], dtype=np.float32),
    }


def test_clipping_scales_a_long_update_down_to_the_norm_as_one_vector() -> None:
    long = update([3.0, 0.0], [0.0, 4.0])  # norm 5 over both tensors together
    clipped = clip_update(long, 1.0)
    assert update_norm(clipped) == pytest.approx(1.0, rel=1e-6)
    assert update_norm(clipped) <= 1.0 * (1 + 1e-6)
    np.testing.assert_allclose(clipped["a"], [[0.6, 0.0]], rtol=1e-6)  # direction kept
    np.testing.assert_allclose(clipped["b"], [0.0, 0.8], rtol=1e-6)
    assert all(clipped[n].dtype == np.float32 and clipped[n].shape == long[n].shape for n in long)


def test_clipping_leaves_a_short_update_as_it_is() -> None:
    short = update([0.3, 0.0], [0.0, 0.4])  # norm 0.5
    clipped = clip_update(short, 1.0)
    assert all(np.array_equal(clipped[n], short[n]) for n in short)
    assert update_norm(clip_update(update([0.0, 0.0], [0.0]), 1.0)) == 0.0


def test_noise_has_the_configured_standard_deviation() -> None:
    zeros = {"w": np.zeros((400, 500), dtype=np.float32), "b": np.zeros(100, dtype=np.float32)}
    noisy = add_noise(zeros, 0.7, np.random.default_rng(3))
    values = np.concatenate([noisy["w"].ravel(), noisy["b"].ravel()]).astype(np.float64)
    # 200,100 draws: the sample std's standard error is 0.7 / sqrt(2n) = 0.0011 (0.16%), so
    # 1% is more than 6 standard errors; the mean's is 0.7 / sqrt(n) = 0.0016.
    assert values.std() == pytest.approx(0.7, rel=0.01)
    assert abs(values.mean()) < 5 * 0.7 / math.sqrt(values.size)


def test_privatise_clips_then_adds_noise_of_multiplier_times_clip() -> None:
    rng = np.random.default_rng(0)
    big = {"w": rng.normal(0, 1, size=100_000).astype(np.float32)}  # norm about 316
    mechanism = ClientPrivacy(clip=2.0, noise_multiplier=0.01)
    noisy = mechanism.privatise(big, seed=1, round_number=3, member="cleveland")
    noise = noisy["w"].astype(np.float64) - clip_update(big, 2.0)["w"].astype(np.float64)
    assert mechanism.noise_std == 0.02
    assert noise.std() == pytest.approx(0.02, rel=0.02)
    only_clipped = ClientPrivacy(clip=2.0, noise_multiplier=0.0).privatise(big, 1, 3, "cleveland")
    assert update_norm(only_clipped) == pytest.approx(2.0, rel=1e-6)


def test_noise_is_the_same_for_the_same_key_seed_round_and_member_and_differs_otherwise() -> None:
    base = update([0.1, 0.2], [0.3])
    key = member_noise_key("0x" + "11" * 32)

    def noised(noise_key: bytes, seed: int, round_number: int, member: str) -> str:
        mechanism = ClientPrivacy(1.0, 1.0, noise_key)
        return weights_hash(mechanism.privatise(base, seed, round_number, member))

    first = noised(key, 0, 1, "cleveland")
    assert noised(key, 0, 1, "cleveland") == first
    others = {
        noised(key, 1, 1, "cleveland"),
        noised(key, 0, 2, "cleveland"),
        noised(key, 0, 1, "hungary"),
        noised(member_noise_key("0x" + "22" * 32), 0, 1, "cleveland"),
        noised(b"", 0, 1, "cleveland"),
    }
    assert first not in others and len(others) == 5


def test_the_noise_key_is_secret_material_derived_from_the_account_key() -> None:
    key = member_noise_key("0x" + "ab" * 32)
    assert len(key) == 32 and key != bytes.fromhex("ab" * 32)
    assert member_noise_key("AB" * 32) == key  # the same account key, written otherwise
    assert "noise_key" not in repr(ClientPrivacy(1.0, 1.0, key))
    first = noise_generator(key, 0, 1, "x").standard_normal(4)
    assert np.array_equal(first, noise_generator(key, 0, 1, "x").standard_normal(4))
    with pytest.raises(PrivacyError, match="account key"):
        member_noise_key("0x")


@pytest.mark.parametrize(
    ("clip", "noise", "match"),
    [
        (0.0, 1.0, "clipping norm must be positive"),
        (-1.0, 1.0, "clipping norm must be positive"),
        (math.nan, 1.0, "clipping norm must be positive"),
        (math.inf, 1.0, "clipping norm must be positive"),
        (1.0, -0.5, "noise multiplier must be a finite number >= 0"),
        (1.0, math.nan, "noise multiplier must be a finite number >= 0"),
    ],
)
def test_bad_mechanisms_are_refused(clip: float, noise: float, match: str) -> None:
    with pytest.raises(PrivacyError, match=match):
        ClientPrivacy(clip, noise)


def test_updates_that_cannot_be_privatised_are_refused() -> None:
    with pytest.raises(PrivacyError, match="NaN or infinite"):
        clip_update(update([math.nan, 0.0], [0.0]), 1.0)
    with pytest.raises(PrivacyError, match="no tensors"):
        ClientPrivacy(1.0, 1.0).privatise({}, 0, 1, "x")
    with pytest.raises(PrivacyError, match="clipping norm"):
        clip_update(update([1.0, 0.0], [0.0]), 0.0)
    with pytest.raises(PrivacyError, match="standard deviation"):
        add_noise(update([1.0, 0.0], [0.0]), -1.0, np.random.default_rng(0))


def test_round_events_report_the_accountants_epsilon_and_nothing_without_noise() -> None:
    # sigma 1.5, delta 1e-5: the accountant's epsilon for 2 releases and for 1
    two = privacy_spent(1.5, 1e-5, 2, released_now=True)
    assert two == {
        "epsilon": RdpAccountant(1.5).step(2).epsilon(1e-5),
        "epsilon_round": RdpAccountant(1.5).step(1).epsilon(1e-5),
        "delta": 1e-5,
    }
    # by hand, best at order 5.7 (RDP 2 * a / (2 * 1.5^2) = a / 2.25):
    #   5.7 / 2.25 + log(4.7 / 5.7) - (log 1e-5 + log 5.7) / 4.7
    #   = 2.533333 - 0.192904 + (11.512925 - 1.740466) / 4.7 = 2.533333 - 0.192904 + 2.079247
    assert two["epsilon"] == pytest.approx(4.419676, abs=1e-6)
    # the statistics round: nothing released yet, and nothing this round
    assert privacy_spent(1.5, 1e-5, 0, released_now=False) == {
        "epsilon": 0.0,
        "epsilon_round": None,
        "delta": 1e-5,
    }
    assert privacy_spent(0.0, 1e-5, 3, released_now=True) == {
        "epsilon": None,
        "epsilon_round": None,
        "delta": None,
    }


# --- the learner ---------------------------------------------------------------------------


def learner(
    site: SiteData, strategy: StrategyConfig, privacy: ClientPrivacy | None, statistics: bool
) -> SiteLearner:
    genesis = initial_weights([site], 0)
    return SiteLearner(site, TrainingConfig(), strategy, 0, genesis, statistics, privacy=privacy)


def test_a_private_update_is_the_plain_update_clipped_and_noised(
    heart_sites: tuple[SiteData, ...],
) -> None:
    site = heart_sites[0]
    mechanism = ClientPrivacy(clip=0.1, noise_multiplier=0.5, noise_key=b"k")
    plain, samples = learner(site, StrategyConfig(), None, False).train(1)
    private, private_samples = learner(site, StrategyConfig(), mechanism, False).train(1)
    assert samples == private_samples and update_norm(plain) > 0.1
    expected = mechanism.privatise(plain, 0, 1, site.site)
    assert weights_hash(private) == weights_hash(expected)


def test_the_statistics_round_sends_its_moments_unchanged(
    heart_sites: tuple[SiteData, ...],
) -> None:
    site = heart_sites[1]
    mechanism = ClientPrivacy(clip=0.01, noise_multiplier=1.0)
    plain, _ = learner(site, StrategyConfig(), None, True).train(1)
    private, _ = learner(site, StrategyConfig(), mechanism, True).train(1)
    assert sorted(private) == [MEAN, MEAN_SQUARE]
    assert weights_hash(private) == weights_hash(plain)


def test_scaffolds_variate_change_is_computed_from_the_noised_delta(
    heart_sites: tuple[SiteData, ...],
) -> None:
    site = heart_sites[2]
    mechanism = ClientPrivacy(clip=0.2, noise_multiplier=1.0, noise_key=b"k")
    member = learner(site, StrategyConfig("scaffold"), mechanism, False)
    sent, samples = member.train(1)
    step = {n: v for n, v in sent.items() if not n.startswith(VARIATE)}
    # round 1: c = c_i = 0, so (c_i(new) - c_i(old)) / n = -step / (K lr n): public values only
    training = member.training
    factor = 1.0 / (training.steps_for(site.n_train) * training.lr * samples)
    for name, values in step.items():
        np.testing.assert_allclose(
            sent[VARIATE + name], -values.astype(np.float64) * factor, rtol=1e-5, atol=1e-9
        )
    # and the step itself is the plain SCAFFOLD step, privatised
    clean = learner(site, StrategyConfig("scaffold"), None, False).train(1)[0]
    clean_step = {n: v for n, v in clean.items() if not n.startswith(VARIATE)}
    assert weights_hash(mechanism.privatise(clean_step, 0, 1, site.site)) == weights_hash(step)


def test_a_private_in_memory_run_is_reproducible_and_moves_away_from_the_plain_one(
    heart_sites: tuple[SiteData, ...],
) -> None:
    training, strategy = TrainingConfig(), StrategyConfig()
    mechanism = ClientPrivacy(clip=0.5, noise_multiplier=1.0)
    first = run_strategy(heart_sites, training, strategy, 2, 0, privacy=mechanism)
    again = run_strategy(heart_sites, training, strategy, 2, 0, privacy=mechanism)
    plain = run_strategy(heart_sites, training, strategy, 2, 0)
    keyed = run_strategy(
        heart_sites,
        training,
        strategy,
        2,
        0,
        privacy=mechanism,
        noise_keys=[b"1", b"2", b"3", b"4"],
    )
    assert first.shared_weights_hash == again.shared_weights_hash
    assert (
        len({first.shared_weights_hash, plain.shared_weights_hash, keyed.shared_weights_hash}) == 3
    )
    assert first.global_metric is not None and 0 <= first.global_metric <= 1
    with pytest.raises(ValueError, match="2 noise keys given for 4 sites"):
        run_strategy(
            heart_sites, training, strategy, 1, 0, privacy=mechanism, noise_keys=[b"", b""]
        )
