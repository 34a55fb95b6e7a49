import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from node.config import MedswarmConfig, config_from_dict, load_config, with_overrides
from node.errors import ConfigError
from node.training import TrainingConfig, default_training_config, site_training_config


def test_empty_file_gives_demo_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("")
    assert load_config(path) == MedswarmConfig()
    assert load_config(None).federation.rounds == 20


def test_values_are_read_into_their_tables() -> None:
    config = config_from_dict(
        {"federation": {"rounds": 3, "quorum": 1}, "network": {"fetch_timeout": 2}}
    )
    assert config.federation.rounds == 3
    assert config.federation.quorum == 1.0
    assert config.network.fetch_timeout == 2.0


def test_unknown_key_names_the_key_and_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'round' in \[federation\].*rounds"):
        config_from_dict({"federation": {"round": 3}})


def test_unknown_table_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown key 'trainig'"):
        config_from_dict({"trainig": {}})


def test_wrong_type_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"federation.rounds = 'ten'"):
        config_from_dict({"federation": {"rounds": "ten"}})
    with pytest.raises(ConfigError, match=r"federation.verify_aggregates"):
        config_from_dict({"federation": {"verify_aggregates": 1}})


def test_out_of_range_values_are_errors() -> None:
    with pytest.raises(ConfigError, match="rounds must be at least 1"):
        config_from_dict({"federation": {"rounds": 0}})
    with pytest.raises(ConfigError, match="quorum"):
        config_from_dict({"federation": {"quorum": 1.5}})
    with pytest.raises(ConfigError, match="max_concurrent_fetches = 0: give at least 1"):
        config_from_dict({"network": {"max_concurrent_fetches": 0}})


@pytest.mark.parametrize(
    ("federation", "match"),
    [
        ({"ledger": "chain"}, r"federation.ledger = 'chain'.*consortium"),
        ({"contribution": "banzhaf"}, r"federation.contribution = 'banzhaf'.*shapley"),
        ({"shapley_permutations": 0}, "shapley_permutations must be at least 1"),
        ({"evaluation_timeout": 0.0}, "evaluation_timeout must be positive"),
    ],
)
def test_round_book_and_contribution_keys_are_checked(
    federation: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"federation": federation})
    good = config_from_dict({"federation": {"ledger": "consortium", "contribution": "shapley"}})
    assert (good.federation.ledger, good.federation.contribution) == ("consortium", "shapley")


def test_differential_privacy_is_off_by_default_and_read_from_the_federation(
    tmp_path: Path,
) -> None:
    default = MedswarmConfig().federation
    assert (default.dp_clip, default.dp_noise_multiplier, default.dp_delta) == (0.0, 0.0, 1e-5)
    assert not default.differential_privacy
    path = tmp_path / "dp.toml"
    path.write_text("[federation]\ndp_clip = 0.5\ndp_noise_multiplier = 2\ndp_delta = 1e-6\n")
    federation = load_config(path).federation
    assert (federation.dp_clip, federation.dp_noise_multiplier, federation.dp_delta) == (
        0.5,
        2.0,
        1e-6,
    )
    assert federation.differential_privacy
    clipping_only = config_from_dict({"federation": {"dp_clip": 1}}).federation
    assert clipping_only.dp_clip == 1.0 and not clipping_only.differential_privacy


@pytest.mark.parametrize(
    ("federation", "match"),
    [
        ({"dp_clip": -1.0}, r"federation.dp_clip = -1.0 must be a finite number >= 0"),
        ({"dp_clip": float("nan")}, "federation.dp_clip = nan"),
        ({"dp_clip": float("inf")}, "federation.dp_clip = inf"),
        ({"dp_clip": 1.0, "dp_noise_multiplier": -0.5}, "dp_noise_multiplier = -0.5 must be"),
        ({"dp_clip": 1.0, "dp_noise_multiplier": float("inf")}, "dp_noise_multiplier = inf"),
        ({"dp_noise_multiplier": 1.0}, r"dp_noise_multiplier needs federation.dp_clip > 0"),
        ({"dp_delta": 0.0}, r"federation.dp_delta = 0.0 must be in \(0, 1\)"),
        ({"dp_delta": 1.0}, r"federation.dp_delta = 1.0 must be in \(0, 1\)"),
        ({"dp_delta": float("nan")}, "federation.dp_delta = nan"),
        ({"dp_clip": "high"}, "federation.dp_clip = 'high'"),
    ],
)
def test_bad_differential_privacy_settings_name_the_key(
    federation: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"federation": federation})


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[federation\nrounds = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")


def test_overrides_skip_none_and_validate() -> None:
    config = with_overrides(MedswarmConfig(), rounds=5, seed=None)
    assert config.federation.rounds == 5
    assert config.federation.seed == 0
    with pytest.raises(ConfigError):
        with_overrides(MedswarmConfig(), rounds=0)


def test_training_defaults_follow_the_data_set() -> None:
    ecg = config_from_dict({"federation": {"dataset": "mitbih-ecg"}})
    assert ecg.training == default_training_config("mitbih-ecg")
    mixed = config_from_dict({"federation": {"dataset": "mitbih-ecg"}, "training": {"lr": 0.5}})
    assert mixed.training == dataclasses.replace(default_training_config("mitbih-ecg"), lr=0.5)
    assert config_from_dict({}).training == TrainingConfig()


def test_unknown_data_set_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="known data sets: csv, heart-disease"):
        config_from_dict({"federation": {"dataset": "heart"}})


def test_csv_needs_a_label_column_and_only_csv_takes_one() -> None:
    config = config_from_dict({"federation": {"dataset": "csv", "csv_label": "outcome"}})
    assert config.federation.csv_label == "outcome"
    with pytest.raises(ConfigError, match="csv_label must name the label column"):
        config_from_dict({"federation": {"dataset": "csv"}})
    with pytest.raises(ConfigError, match='applies to dataset = "csv" only'):
        config_from_dict({"federation": {"csv_label": "num"}})


def test_overriding_the_data_set_brings_its_training_defaults() -> None:
    config = with_overrides(MedswarmConfig(), dataset="tcga-brca")
    assert config.training == default_training_config("tcga-brca")
    tuned = dataclasses.replace(MedswarmConfig(), training=TrainingConfig(lr=0.7))
    assert with_overrides(tuned, dataset="tcga-brca").training.lr == 0.7


def test_naming_one_local_budget_unsets_the_other(tmp_path: Path) -> None:
    path = tmp_path / "medswarm.toml"
    path.write_text("[training]\nlocal_epochs = 2\n")
    training = load_config(path).training
    assert (training.local_steps, training.local_epochs) == (None, 2)
    path.write_text('[federation]\ndataset = "tcga-brca"\n[training]\nlocal_epochs = 1\n')
    assert load_config(path).training.local_steps is None
    path.write_text("[training]\nlocal_steps = 5\nlocal_epochs = 1\n")
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(path)


def test_segmented_fetch_settings_are_read_and_checked() -> None:
    network = config_from_dict(
        {"network": {"segment_bytes": 2**20, "fetch_concurrency": 8, "fetch_timeout": 8}}
    ).network
    assert (network.segment_bytes, network.fetch_concurrency) == (2**20, 8)
    # 4 x 8 s x (1 MiB of the 64 MiB largest blob) = 0.5 s, raised to a quarter of 8 s
    assert network.segment_policy.segment_timeout == 2.0
    with pytest.raises(
        ConfigError, match=r"segment_bytes = 1000 is too small: give at least 65536"
    ):
        config_from_dict({"network": {"segment_bytes": 1000}})
    with pytest.raises(ConfigError, match=r"fetch_concurrency = 0: give 1 to 8"):
        config_from_dict({"network": {"fetch_concurrency": 0}})
    with pytest.raises(ConfigError, match=r"fetch_concurrency = 9: give 1 to 8"):
        config_from_dict({"network": {"fetch_concurrency": 9}})


def test_the_announcement_limit_is_read_and_checked() -> None:
    assert config_from_dict({}).network.max_announcements_per_round == 16
    raw = {"network": {"max_announcements_per_round": 5}}
    assert config_from_dict(raw).network.max_announcements_per_round == 5
    with pytest.raises(
        ConfigError, match=r"max_announcements_per_round = 4 is too small: give at least 5"
    ):
        config_from_dict({"network": {"max_announcements_per_round": 4}})


def test_strategy_table_and_standardisation() -> None:
    config = config_from_dict(
        {
            "federation": {"standardise": "federation"},
            "strategy": {"name": "fedprox", "proximal_mu": 0.1, "local_layers": ["linear.bias"]},
        }
    )
    assert config.strategy.local_layers == ("linear.bias",)
    assert site_training_config(config.training, config.strategy).proximal_mu == 0.1
    assert config.training.proximal_mu == 0.0
    assert config.federation.standardise == "federation"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"strategy": {"name": "scaffold"}, "training": {"momentum": 0.9}}, "plain SGD"),
        ({"strategy": {"name": "fedprox"}}, "proximal_mu must be > 0"),
        ({"strategy": {"name": "fedadam", "tau": 0}}, "tau must be a positive"),
        ({"strategy": {"local_layers": "linear.bias"}}, "must be a list"),
        ({"federation": {"standardise": "global"}}, "allowed values: 'site', 'federation'"),
    ],
)
def test_bad_strategy_settings_name_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw, source="consortium.toml")


def test_the_demo_runs_the_setting_chosen_on_validation() -> None:
    from node.strategy_sim import TUNED_HEART_POOLED

    config = load_config(Path(__file__).parents[3] / "testnet" / "demo.toml")
    assert config.federation.dataset == "heart-disease"
    assert config.federation.standardise == "federation"
    assert config.federation.rounds == 21  # a statistics round, then 20 training rounds
    assert config.strategy == TUNED_HEART_POOLED["scaffold"]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b'[federation]\nname = "h\xe9art"\n', "is not UTF-8 text"),  # Latin-1, not UTF-8
        (b"[federation]\nrounds = " + b"9" * 5000 + b"\n", "not valid TOML.*4300 digits"),
        (b"[federation]\nname = " + b"[" * 60_000 + b"]" * 60_000, "too deeply"),
    ],
)
def test_files_toml_cannot_read_are_config_errors(
    tmp_path: Path, content: bytes, match: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_an_integer_too_large_for_a_float_key_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError, match="update_timeout = <an integer of 1329 bits> is too large for a float"
    ):
        config_from_dict({"federation": {"update_timeout": 10**400}})


def test_a_value_of_the_wrong_type_is_shown_cut_short() -> None:
    nested: list[Any] = []
    for _ in range(30_000):  # written in full, this took seconds and 60 KB of message
        nested = [nested]
    with pytest.raises(ConfigError, match=re.escape("federation.name = [[[[[[[...]]]]]]] should")):
        config_from_dict({"federation": {"name": nested}})
    with pytest.raises(
        ConfigError, match=re.escape("federation.name = <an integer of 16610 bits>")
    ):
        config_from_dict({"federation": {"name": 10**5000}})


def test_secure_aggregation_is_off_by_default_and_allowed_with_the_consortium_and_dp() -> None:
    assert not MedswarmConfig().federation.secure_aggregation
    federation = config_from_dict(
        {
            "federation": {
                "secure_aggregation": True,
                "ledger": "consortium",
                "dp_clip": 0.5,
                "dp_noise_multiplier": 1.0,
            }
        }
    ).federation
    assert federation.secure_aggregation and federation.differential_privacy


@pytest.mark.parametrize(
    ("federation", "match"),
    [
        ({"ledger": "ledger"}, 'needs federation.ledger = "consortium"'),
        ({"screen_updates": True}, "set federation.screen_updates = false"),
        ({"validate_updates": True}, "set federation.validate_updates = false"),
        ({"aggregation": "median"}, 'set federation.aggregation = "fedavg"'),
        ({"aggregation": "krum"}, 'set federation.aggregation = "fedavg"'),
        ({"contribution": "shapley"}, 'set federation.contribution = "loss"'),
    ],
)
def test_secure_aggregation_refuses_what_needs_single_updates(
    federation: dict[str, object], match: str
) -> None:
    raw = {"secure_aggregation": True, "ledger": "consortium", **federation}
    with pytest.raises(ConfigError, match=re.escape(match) if '"' in match else match):
        config_from_dict({"federation": raw})
    config_from_dict({"federation": {**raw, "secure_aggregation": False}})  # fine without


def test_secure_aggregation_needs_room_for_its_announcements() -> None:
    raw = {"federation": {"secure_aggregation": True, "ledger": "consortium"}}
    with pytest.raises(ConfigError, match="allow at least 8"):
        config_from_dict({**raw, "network": {"max_announcements_per_round": 7}})
    config_from_dict({**raw, "network": {"max_announcements_per_round": 8}})


def test_the_update_codec_is_read_and_checked() -> None:
    assert MedswarmConfig().federation.update_codec == "fp32"
    federation = config_from_dict(
        {"federation": {"update_codec": "topk", "topk_fraction": 0.05}}
    ).federation
    assert (federation.update_codec, federation.topk_fraction) == ("topk", 0.05)
    assert (
        config_from_dict({"federation": {"update_codec": "int8"}}).federation.topk_fraction == 0.01
    )
    with pytest.raises(ConfigError, match="update_codec = 'zstd'; allowed values: 'fp32', 'fp16'"):
        config_from_dict({"federation": {"update_codec": "zstd"}})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"federation": {"update_codec": "topk", "topk_fraction": 0.0}},
            r"federation.topk_fraction = 0.0 must be in \(0, 1\]",
        ),
        (
            {"federation": {"update_codec": "topk", "topk_fraction": float("nan")}},
            "federation.topk_fraction = nan",
        ),
        (
            {"federation": {"update_codec": "int8", "topk_fraction": 0.1}},
            'topk_fraction applies to update_codec = "topk" only',
        ),
        (
            {
                "federation": {
                    "update_codec": "int8",
                    "ledger": "consortium",
                    "secure_aggregation": True,
                },
                "network": {"max_announcements_per_round": 16},
            },
            "update_codec = 'int8' cannot be used with secure_aggregation",
        ),
        (
            {"federation": {"update_codec": "topk"}, "strategy": {"name": "scaffold"}},
            'update_codec = "topk" cannot be used with strategy "scaffold"',
        ),
    ],
)
def test_bad_update_codec_settings_name_the_problem(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)
