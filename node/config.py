"""Node and federation configuration: a TOML file read into frozen dataclasses.

Every table maps to one dataclass; unknown keys and wrong types are errors that name the
table, the key and what is allowed. Defaults are the ones the demo uses, so an empty file
is a valid configuration.

    [node]        a node process's identity, data and files   (NodeSettings)
    [chain]       the JSON-RPC chain a node process uses      (ChainSettings)
    [status]      the node's HTTP status server, off unless set  (StatusSettings)

``medswarm testnet run`` (one process, embedded chain) ignores ``[node]`` and ``[chain]``.

    [federation]  name, dataset, rounds, seed, deadlines, quorum  (FederationConfig)
    [training]    local optimiser settings                        (node.training.TrainingConfig)
                  keys left out take the data set's recommended values
                  (node.training.default_training_config)
    [strategy]    server step, FedProx, personalisation            (node.strategies.StrategyConfig)
    [network]     libp2p listen address, timeouts, size limits,   (gossip.service.GossipConfig)
                  segmented fetches (docs/configuration.md)
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from gossip.service import GossipConfig
from medswarm.http_responder import split_host_port
from node.codecs import DEFAULT_TOPK_FRACTION
from node.data import TASKS
from node.errors import ConfigError
from node.sealed_keys import DEFAULT_SCRYPT_N, check_scrypt_n
from node.strategies import StrategyConfig
from node.training import TrainingConfig, default_training_config, site_training_config

SECURE_ANNOUNCEMENTS_PER_ROUND = 8  # what an aggregator announces in a secure round


@dataclass(frozen=True)
class FederationConfig:
    """What the federation trains and how its rounds are paced."""

    name: str = "heart-disease"
    dataset: str = "heart-disease"  # heart-disease, tcga-brca, mitbih-ecg or csv
    csv_label: str = ""  # dataset "csv" only: the label column of every hospital's file
    rounds: int = 20
    seed: int = 0
    update_timeout: float = 60.0  # how long the aggregator waits for all members' updates
    takeover_timeout: float = 20.0  # extra wait per rank before the next candidate takes over
    aggregate_timeout: float = 120.0  # how long members wait for the aggregate
    chain_timeout: float = 60.0  # how long to wait for a round record to appear on chain
    quorum: float = 2 / 3  # fraction of members whose updates a round needs
    round_attempts: int = 3  # failed attempts in a row at one round before the node stops; 0: never
    verify_aggregates: bool = True  # members recompute the aggregate from its inputs
    # "site": each site standardises its features with its own rows (FLamby's protocol);
    # "federation": round 1 agrees pooled statistics and training starts in round 2
    # (node/standardise.py)
    standardise: Literal["site", "federation"] = "site"
    reward_pool_eth: float = 10.0  # funded at start, paid out after the last round
    # where rounds are kept: "ledger" (Registry + Ledger + RewardPool: a transaction per
    # cluster record and per attestation) or "consortium" (Consortium + EpochRewards: commitments
    # and signatures by gossip, one transaction per round; docs/ledger.md)
    ledger: Literal["ledger", "consortium"] = "ledger"
    # what a member's recorded score measures: "loss" (the aggregator's loss drop on its own
    # rows, times samples) or "shapley" (each member's Shapley value, measured by every member
    # of the cluster on its own rows, median over them; docs/contribution.md)
    contribution: Literal["loss", "shapley"] = "loss"
    shapley_permutations: int = 24  # orders sampled per evaluator (exact when members! <= it)
    evaluation_timeout: float = 5.0  # how long the aggregator waits for the others' evaluations
    # Byzantine robustness (node/robust.py, docs/robustness.md): the rule that combines the
    # updates of a cluster and the clusters' aggregates, and the screening that rejects updates
    # no honest member would send (rejections lower reputation on the Consortium)
    aggregation: Literal[
        "fedavg", "median", "trimmed-mean", "krum", "multi-krum", "geometric-median"
    ] = "fedavg"
    trim_fraction: float = 0.2  # trimmed-mean: share of values dropped at each end
    byzantine: int = 1  # krum and multi-krum: attackers assumed per aggregation
    clip_norm: float = 0.0  # scale updates longer than this down to it (0: no clipping)
    screen_updates: bool = False  # reject zero, opposed, oversized, copied and replayed updates
    outlier_norm_factor: float = 5.0  # screening: how many times the others' median length
    outlier_min_cosine: float = -0.5  # screening: least cosine with the others' median
    # every member measures the step of every update of the round on its own rows and gossips
    # the loss ratios; the aggregator rejects an update whose median robust z-score over the
    # evaluators exceeds validation_threshold and that raises the median evaluator's loss by
    # more than validation_max_loss_increase (node/validation.py): data poisoning such as
    # flipped labels
    validate_updates: bool = False
    validation_threshold: float = 1.5
    validation_max_loss_increase: float = 0.4
    # client-level differential privacy (node/privacy.py, docs/privacy.md): each member clips
    # its model update to L2 norm dp_clip (0: off) and adds Gaussian noise of standard
    # deviation dp_noise_multiplier × dp_clip before announcing it; rounds report the epsilon
    # spent at dp_delta (node/accountant.py)
    dp_clip: float = 0.0
    dp_noise_multiplier: float = 0.0
    dp_delta: float = 1e-5
    # secure aggregation within each cluster (node/secagg.py, node/secure_round.py,
    # docs/privacy.md): members mask their updates so that the cluster's aggregator learns only
    # their sample-weighted sum; needs ledger = "consortium" and no rule that reads single
    # updates (screening, validation, robust aggregation, Shapley scores)
    secure_aggregation: bool = False
    # how members encode their model updates (node/codecs.py, docs/configuration.md): "fp32"
    # (the weights encoding), "fp16", "int8" (per-block scales, stochastic rounding) or
    # "topk" (the topk_fraction of values of largest magnitude, with error feedback);
    # cluster aggregates travel as fp16 or int8 under those, else float32; global models
    # stay float32
    update_codec: Literal["fp32", "fp16", "int8", "topk"] = "fp32"
    topk_fraction: float = DEFAULT_TOPK_FRACTION

    @property
    def differential_privacy(self) -> bool:
        """Whether members noise their updates (clipping alone gives no guarantee)."""
        return self.dp_clip > 0 and self.dp_noise_multiplier > 0

    def __post_init__(self) -> None:
        _require(self.rounds >= 1, "federation.rounds must be at least 1")
        _require(0 < self.quorum <= 1, "federation.quorum must be in (0, 1]")
        _require(
            self.round_attempts >= 0, "federation.round_attempts must be 0 (never stop) or more"
        )
        for name in (
            "update_timeout",
            "takeover_timeout",
            "aggregate_timeout",
            "chain_timeout",
            "evaluation_timeout",
        ):
            _require(getattr(self, name) > 0, f"federation.{name} must be positive")
        _require(self.reward_pool_eth >= 0, "federation.reward_pool_eth must not be negative")
        _require(
            self.shapley_permutations >= 1, "federation.shapley_permutations must be at least 1"
        )
        _require(0 <= self.trim_fraction < 0.5, "federation.trim_fraction must be in [0, 0.5)")
        _require(self.byzantine >= 0, "federation.byzantine must not be negative")
        _require(self.clip_norm >= 0, "federation.clip_norm must not be negative (0: off)")
        _require(self.outlier_norm_factor > 1, "federation.outlier_norm_factor must exceed 1")
        _require(
            self.validation_threshold > 0,
            "federation.validation_threshold must be positive (a robust z-score; default 1.5)",
        )
        _require(
            self.validation_max_loss_increase >= 0,
            "federation.validation_max_loss_increase must not be negative (a fraction of the "
            "loss: 0.4 is 40%)",
        )
        _require(
            -1 <= self.outlier_min_cosine <= 1, "federation.outlier_min_cosine must be in [-1, 1]"
        )
        self._check_privacy()
        self._check_secure_aggregation()
        self._check_update_codec()
        _require(self.name.replace("-", "").isalnum(), "federation.name: letters, digits, '-'")
        _require(
            self.dataset in TASKS,
            f"federation.dataset = {self.dataset!r}; known data sets: {', '.join(sorted(TASKS))}",
        )
        if self.dataset == "csv":
            _require(
                bool(self.csv_label),
                "federation.csv_label must name the label column of the CSV files (e.g. "
                'csv_label = "outcome")',
            )
        else:
            _require(
                not self.csv_label,
                f'federation.csv_label applies to dataset = "csv" only; {self.dataset} '
                "defines its own labels",
            )

    def _check_secure_aggregation(self) -> None:
        if not self.secure_aggregation:
            return
        _require(
            self.ledger == "consortium",
            'federation.secure_aggregation needs federation.ledger = "consortium": the Ledger '
            "contract records each update's own score, which needs the update itself",
        )
        needs_updates = {
            "screen_updates = false": self.screen_updates,
            "validate_updates = false": self.validate_updates,
            'aggregation = "fedavg"': self.aggregation != "fedavg",
            'contribution = "loss"': self.contribution == "shapley",
        }
        for change, conflict in needs_updates.items():
            _require(
                not conflict,
                f"federation.secure_aggregation hides each member's update from the "
                f"aggregator, which this setting needs: set federation.{change}, or turn "
                "secure_aggregation off (docs/privacy.md)",
            )

    def _check_update_codec(self) -> None:
        _require(
            math.isfinite(self.topk_fraction) and 0 < self.topk_fraction <= 1,
            f"federation.topk_fraction = {self.topk_fraction} must be in (0, 1]: the share of "
            f"an update's values top-k sends (default {DEFAULT_TOPK_FRACTION}, 1%)",
        )
        _require(
            self.update_codec == "topk" or self.topk_fraction == DEFAULT_TOPK_FRACTION,
            f'federation.topk_fraction applies to update_codec = "topk" only; with '
            f"{self.update_codec!r} leave it out",
        )
        _require(
            not self.secure_aggregation or self.update_codec == "fp32",
            f"federation.update_codec = {self.update_codec!r} cannot be used with "
            "secure_aggregation, which masks the float32 update: set update_codec = "
            '"fp32", or turn secure_aggregation off',
        )

    def _check_privacy(self) -> None:
        _require(
            math.isfinite(self.dp_clip) and self.dp_clip >= 0,
            f"federation.dp_clip = {self.dp_clip} must be a finite number >= 0: the L2 norm "
            "each member clips its update to (0: differential privacy off)",
        )
        _require(
            math.isfinite(self.dp_noise_multiplier) and self.dp_noise_multiplier >= 0,
            f"federation.dp_noise_multiplier = {self.dp_noise_multiplier} must be a finite "
            "number >= 0: the noise's standard deviation over dp_clip",
        )
        _require(
            self.dp_noise_multiplier == 0 or self.dp_clip > 0,
            "federation.dp_noise_multiplier needs federation.dp_clip > 0: the noise is "
            "calibrated to the clipping norm (standard deviation dp_noise_multiplier × dp_clip)",
        )
        _require(
            0 < self.dp_delta < 1,
            f"federation.dp_delta = {self.dp_delta} must be in (0, 1); keep it well below "
            "1 / (number of members), e.g. the default 1e-5",
        )


@dataclass(frozen=True)
class NodeSettings:
    """Who this node is and where it keeps things (``medswarm node run`` only).

    Relative paths are relative to the config file's directory.
    """

    name: str = ""  # defaults to the site name
    site: str = ""  # a site of the data set; for dataset "csv" the path of this node's file
    shard: int = 0  # this node's share of the site's training rows: shard of shards
    shards: int = 1
    data_dir: str = ""  # default: $MEDSWARM_DATA, else ../shared/data
    state_dir: str = "state"  # blobs and checkpoint
    account_key_file: str = "account.key"  # encrypted: a Web3 Secret Storage (v3) keystore
    identity_key_file: str = "identity.key"  # encrypted: a medswarm-identity keystore
    # a file (mode 0600) holding the key files' passphrase; "": $MEDSWARM_PASSPHRASE
    passphrase_file: str = ""
    # scrypt cost of key files this node creates or encrypts (opening one uses the cost it
    # records): a power of two, 2**10 to 2**20; the default is the v3 standard
    scrypt_n: int = DEFAULT_SCRYPT_N
    events_file: str = "events.jsonl"
    connect_timeout: float = 60.0
    linger_seconds: float = 30.0  # keep serving blobs this long after the last round

    def __post_init__(self) -> None:
        _require(0 <= self.shard < self.shards, "node.shard must be in 0..node.shards-1")
        _require(self.linger_seconds >= 0, "node.linger_seconds must not be negative")
        try:
            check_scrypt_n(self.scrypt_n)
        except ValueError as exc:
            raise ConfigError(f"node.scrypt_n: {exc}") from None


@dataclass(frozen=True)
class ChainSettings:
    """The JSON-RPC chain a node process talks to (``medswarm node run`` only).

    ``chain_id`` 0 takes the deployment record's; otherwise the record and the RPC node must
    both be on that chain. The node stops at start when the chain's latest block is stamped
    more than ``max_clock_skew`` seconds ahead of this machine's clock (0: no check).
    """

    url: str = "http://127.0.0.1:8545"
    deployment_file: str = "deployment.json"  # written by the federation's deployer
    chain_id: int = 0
    max_clock_skew: float = 60.0
    rpc_timeout: float = 10.0  # seconds per JSON-RPC request

    def __post_init__(self) -> None:
        if self.chain_id < 0:
            raise ValueError(f"chain.chain_id = {self.chain_id}: give the chain's id, or 0")
        if not (math.isfinite(self.max_clock_skew) and self.max_clock_skew >= 0):
            raise ValueError(
                f"chain.max_clock_skew = {self.max_clock_skew}: give seconds >= 0 (0: no check)"
            )
        if not (math.isfinite(self.rpc_timeout) and self.rpc_timeout > 0):
            raise ValueError(f"chain.rpc_timeout = {self.rpc_timeout}: give seconds above 0")


@dataclass(frozen=True)
class StatusSettings:
    """The node's HTTP status server (node/status_server.py): GET /health, /status, /metrics.

    ``bind`` is ``host:port`` (``[::1]:port`` for IPv6; port 0 picks a free one); empty
    leaves the server off. It has no authentication: keep it on 127.0.0.1.
    """

    bind: str = ""

    def __post_init__(self) -> None:
        if self.bind:
            parse_bind(self.bind)


def parse_bind(value: str) -> tuple[str, int]:
    """``host:port`` as (host, port); a :class:`ConfigError` naming ``status.bind`` if not."""
    try:
        return split_host_port(value)
    except ValueError as exc:
        raise ConfigError(
            f'status.bind = {value!r}: {exc}, e.g. "127.0.0.1:9464" (or "127.0.0.1:0" '
            "for any free port)"
        ) from None


@dataclass(frozen=True)
class MedswarmConfig:
    """The whole configuration of a federation run."""

    federation: FederationConfig = field(default_factory=FederationConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    network: GossipConfig = field(default_factory=GossipConfig)
    node: NodeSettings = field(default_factory=NodeSettings)
    chain: ChainSettings = field(default_factory=ChainSettings)
    status: StatusSettings = field(default_factory=StatusSettings)

    def __post_init__(self) -> None:
        site_training_config(self.training, self.strategy)  # raises for a bad combination
        _require(
            self.federation.update_codec != "topk" or self.strategy.name != "scaffold",
            'federation.update_codec = "topk" cannot be used with strategy "scaffold": each '
            "site keeps its exact control variate while top-k sends a part of its change, so "
            'the server variate would drift; choose "int8", "fp16" or "fp32", or another '
            "strategy",
        )
        _require(
            not self.federation.secure_aggregation
            or self.network.max_announcements_per_round >= SECURE_ANNOUNCEMENTS_PER_ROUND,
            f"network.max_announcements_per_round = {self.network.max_announcements_per_round} "
            "is too few for federation.secure_aggregation: an aggregator announces its keys, "
            "shares, masked update, answer, roster, request, aggregate and attestation each "
            f"round; allow at least {SECURE_ANNOUNCEMENTS_PER_ROUND}",
        )


T = TypeVar("T")


def load_config(path: Path | None) -> MedswarmConfig:
    """Read a TOML file (or the defaults when ``path`` is None)."""
    if path is None:
        return MedswarmConfig()
    return config_from_dict(read_toml(path, "config file"), source=str(path))


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """Parse a TOML file; a missing or malformed file is a :class:`ConfigError` naming it."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text, as TOML must be: {exc}") from exc
    except ValueError as exc:  # TOMLDecodeError, or an integer of more than 4,300 digits
        raise ConfigError(f"{what} {path} is not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib recurses once per level of nesting
        raise ConfigError(
            f"{what} {path} nests arrays or inline tables too deeply to read"
        ) from exc


def config_from_dict(raw: dict[str, Any], source: str = "config") -> MedswarmConfig:
    """Build and validate a configuration from parsed TOML.

    ``[training]`` keys that are not given take the recommended values of the federation's
    data set (for Fed-Heart-Disease, :class:`~node.training.TrainingConfig`'s defaults).
    """
    federation = raw.get("federation", {})
    dataset = federation.get("dataset") if isinstance(federation, dict) else None
    training = raw.get("training", {})
    if isinstance(training, dict):
        # TOML has no null: naming one local budget (steps or epochs) unsets the other.
        budgets = [key for key in ("local_steps", "local_epochs") if key in training]
        if len(budgets) == 1:
            other = "local_epochs" if budgets[0] == "local_steps" else "local_steps"
            training = {**training, other: None}
            raw = {**raw, "training": training}
    if isinstance(dataset, str) and dataset in TASKS and isinstance(training, dict):
        recommended = dataclasses.asdict(default_training_config(dataset))
        raw = {**raw, "training": {**recommended, **training}}
    return _build(MedswarmConfig, raw, source, "")


def with_overrides(config: MedswarmConfig, **federation: Any) -> MedswarmConfig:
    """A copy with some ``[federation]`` values replaced (``None`` values are skipped).

    A new ``dataset`` brings its recommended ``[training]`` values along if the old
    configuration used the old data set's recommended ones.
    """
    changes = {key: value for key, value in federation.items() if value is not None}
    if not changes:
        return config
    try:
        updated = dataclasses.replace(config.federation, **changes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
    training = config.training
    if updated.dataset != config.federation.dataset and training == default_training_config(
        config.federation.dataset
    ):
        training = default_training_config(updated.dataset)
    return dataclasses.replace(config, federation=updated, training=training)


def to_toml_dict(config: MedswarmConfig) -> dict[str, dict[str, Any]]:
    """The configuration as nested plain values (what a run directory records)."""
    return {
        table.name: dataclasses.asdict(getattr(config, table.name))
        for table in dataclasses.fields(config)
    }


def _build(cls: type[T], raw: Any, source: str, table: str) -> T:
    where = f"[{table}]" if table else "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key {unknown[0]!r} in {where}; valid keys are "
            + ", ".join(sorted(fields))
        )
    values: dict[str, Any] = {}
    for name, value in raw.items():
        hint = hints[name]
        key = f"{table}.{name}" if table else name
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, source, key)  # type: ignore[arg-type]
        else:
            values[name] = _coerce(value, hint, source, key)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _coerce(value: Any, hint: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, source, key)
            except ConfigError:
                continue
        raise ConfigError(f"{source}: {key} = {_shown(value)} has the wrong type (expected {hint})")
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list")
        (item_type, *_rest) = typing.get_args(hint) or (Any,)
        return tuple(_coerce(item, item_type, source, key) for item in value)
    if hint is Any:
        return value
    if hint is type(None):
        if value is not None:
            raise ConfigError(f"{source}: {key} must be empty")
        return None
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(
                f"{source}: {key} = {_shown(value)} is too large for a float "
                "(at most about 1.8e308)"
            ) from None
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            allowed = ", ".join(repr(a) for a in typing.get_args(hint))
            raise ConfigError(f"{source}: {key} = {_shown(value)}; allowed values: {allowed}")
        return value
    if not isinstance(value, hint) or (isinstance(value, bool) and hint is not bool):
        raise ConfigError(
            f"{source}: {key} = {_shown(value)} should be of type {getattr(hint, '__name__', hint)}"
        )
    return value


class _ShortRepr(reprlib.Repr):
    """Values in messages, cut short: in full, a deeply nested array takes seconds to write
    and an integer of thousands of digits cannot be written at all."""

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 64:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_shown = _ShortRepr().repr


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)
