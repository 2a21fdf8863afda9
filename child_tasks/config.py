"""Task configs: YAML files in `configs/`, validated with pydantic, with errors a person can act on.

A task config says what a rule is trained on and how much: the task and its data, the model and its
sizes, the budget (epochs, batch size), the learning-rate grid and the short run that picks from it, the
metric that is the reward, the guards (time limit, loss blow-up factor), and the seeds of comparisons.

    cfg = load_task_config("digits")              # configs/digits.yaml
    cfg = load_task_config("path/to/mine.yaml")
    small = override(cfg, {"epochs": 2, "model.width": 8})

Every error names the file, the key path (``model.width``) and what was expected; an unknown key is
rejected with the closest known keys suggested, since a misspelt key silently ignored would change an
experiment without anyone noticing. Every whole number is strict and bounded (`configuration.models`:
epochs at most 10**4, batch sizes 10**5, widths 16384, data sizes 10**7), so that a config that validates
trains in finite time and memory. Reading, wording and overrides are `configuration`'s, shared by every
config of the project.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from configuration import (MAX_BATCH, MAX_EPOCHS, MAX_WIDTH, BatchSize, ConfigError, DataSize, Epochs, Layers,
                           Seed, Seeds, Strict, Width, check_name, did_you_mean, expect_mapping, load_yaml,
                           quoted, set_dotted, validation_error, whole)
from configuration.files import path_from_env

# The configs folder: shipped inside a wheel as child_tasks/configs (pyproject's package-dir), else the
# source checkout's configs/ beside the packages (an editable install, or the repository itself).
_SHIPPED = Path(__file__).resolve().parent / "configs"
CONFIG_DIR = _SHIPPED if _SHIPPED.is_dir() else Path(__file__).resolve().parents[1] / "configs"
TASKS = ("digits", "mnist1d", "cifar10", "nmt", "tabular", "regression", "adding", "order", "lm")
# Validation metrics, and the tasks that report each: every metric is either higher- or lower-is-better
# (`higher_is_better`); accuracy and BLEU are on a 0-100 scale, mse on the task's (standardised) target.
HIGHER_IS_BETTER = {"accuracy": True, "bleu": True, "mse": False, "perplexity": False}
TASK_METRICS = {"digits": ("accuracy",), "mnist1d": ("accuracy",), "cifar10": ("accuracy",),
                "nmt": ("accuracy", "bleu"), "tabular": ("accuracy",), "regression": ("mse",),
                "adding": ("mse",), "order": ("accuracy",), "lm": ("perplexity", "accuracy")}
NORMALISED = ("val_loss", "train_loss")  # reward kinds scored against a Reference (child_tasks.reward)
CACHE_ENV = "NOS_CACHE_DIR"




# --- models -------------------------------------------------------------------------------------------

class ConvNetConfig(Strict):
    """The NOS ConvNet: two 3x3 conv layers of ``width`` filters."""
    name: Literal["convnet"]
    width: Width = 32


class WideResNetConfig(Strict):
    """WRN-depth-widen; depth must be 6n+4."""
    name: Literal["wrn"]
    depth: whole(1000, 10) = 16
    widen: whole(64) = 4
    dropout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _depth_is_6n_plus_4(self) -> WideResNetConfig:
        if (self.depth - 4) % 6 != 0:
            raise ValueError(f"depth must be 6n+4 (10, 16, 22, 28, 40, ...), got {self.depth}")
        return self


class _Attention(Strict):
    """What every Transformer section checks: its heads divide its width (its subclasses declare both)."""

    @model_validator(mode="after")
    def _heads_divide_width(self) -> _Attention:
        d_model, heads = self.d_model, self.heads  # type: ignore[attr-defined]
        if d_model % heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        return self


class TransformerConfig(_Attention):
    """A small encoder-decoder Transformer for translation."""
    name: Literal["transformer"]
    layers: Layers = 2
    d_model: whole(MAX_WIDTH, 8) = 64
    heads: Width = 4
    ff: Width | None = Field(None, description="feed-forward width; 4 * d_model when unset")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    max_decode_len: whole(10_000) | None = Field(None, description="greedy decoding steps; the data's when "
                                                 "unset")


class ConvNet1DConfig(Strict):
    """The MNIST-1D paper's 1D ConvNet: three strided convs of ``width`` channels."""
    name: Literal["cnn1d"]
    width: Width = 25


class RNNConfig(Strict):
    """A recurrent network (LSTM or GRU): ``layers`` layers of ``hidden`` units, read out at the last step."""
    name: Literal["rnn"]
    cell: Literal["lstm", "gru"] = "lstm"
    hidden: Width = 32
    layers: whole(8) = 1


class CausalLMConfig(_Attention):
    """A small pre-norm decoder-only Transformer language model."""
    name: Literal["causal_transformer"]
    layers: Layers = 2
    d_model: whole(MAX_WIDTH, 8) = 32
    heads: Width = 2
    ff: Width | None = Field(None, description="feed-forward width; 4 * d_model when unset")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)


class MLPConfig(Strict):
    """A ReLU MLP: ``layers`` hidden layers of ``hidden`` units (the MNIST-1D paper's: 2 of 100)."""
    name: Literal["mlp"]
    hidden: Width = 100
    layers: whole(16, 0) = 2


ModelConfig = Annotated[ConvNetConfig | WideResNetConfig | TransformerConfig | ConvNet1DConfig | MLPConfig
                        | RNNConfig | CausalLMConfig, Field(discriminator="name")]
# Which models each task's data fits: images take 2D convs, MNIST-1D's signals 1D convs or an MLP.
TASK_MODELS = {"digits": ("convnet", "wrn", "mlp"), "cifar10": ("convnet", "wrn", "mlp"),
               "mnist1d": ("cnn1d", "mlp"), "nmt": ("transformer",), "tabular": ("mlp",),
               "regression": ("mlp",), "adding": ("rnn",), "order": ("rnn",), "lm": ("causal_transformer",)}


# --- data (the kind is the task's name, filled in from `task`) ---------------------------------------

class DigitsData(Strict):
    """scikit-learn's 8x8 digits, split once with a fixed seed (the rule's seed never changes the split)."""
    kind: Literal["digits"] = "digits"
    split_seed: Seed = 0
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)


class Mnist1DData(Strict):
    """MNIST-1D generated offline by the `mnist1d` package (``num_samples`` in all, its generator seeded
    by ``data_seed``), split once by ``split_seed`` like digits."""
    kind: Literal["mnist1d"] = "mnist1d"
    num_samples: whole(1_000_000, 100) = Field(5000, description="more give a finer validation metric")
    data_seed: Seed = Field(42, description="the generator's seed (42: the paper's data)")
    split_seed: Seed = 0
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)


class Cifar10Data(Strict):
    """CIFAR-10 from ``path`` (the python batches folder or the .tar.gz), else from env ``path_env``."""
    kind: Literal["cifar10"] = "cifar10"
    path: str | None = None
    path_env: str = "NOS_CIFAR10"
    val_size: DataSize = 5000
    split_seed: Seed = 0
    augment: bool = True


class NMTData(Strict):
    """The embedded synthetic language pair, or a parallel corpus in ``directory`` (or env ``path_env``)."""
    kind: Literal["nmt"] = "nmt"
    source: Literal["synthetic", "parallel"] = "synthetic"
    n_train: DataSize = 4000
    n_val: DataSize = 300
    n_test: DataSize = 300
    split_seed: Seed = 0
    directory: str | None = None
    path_env: str = "NOS_NMT_DATA"
    src_lang: str = "src"
    tgt_lang: str = "tgt"
    min_freq: DataSize = Field(1, description="parallel corpus: rarer words become UNK")
    max_len: whole(10_000) = Field(50, description="parallel corpus: longer pairs are left out")
    lowercase: bool = False


class TabularData(Strict):
    """Tabular classification (child_tasks.generated.load_tabular): scikit-learn's make_classification
    generated from ``data_seed`` (the ``n_*``, ``class_sep`` and ``flip_y`` keys shape it), or the bundled
    wine or breast_cancer sets; split once by ``split_seed``."""
    kind: Literal["tabular"] = "tabular"
    source: Literal["make_classification", "wine", "breast_cancer"] = "make_classification"
    n_samples: whole(1_000_000, 100) = 6000
    n_features: whole(1000, 2) = 20
    n_informative: whole(1000) = 8
    n_classes: whole(100, 2) = 4
    class_sep: float = Field(1.0, gt=0.0)
    flip_y: float = Field(0.02, ge=0.0, lt=1.0, description="fraction of labels assigned at random")
    data_seed: Seed = 0
    split_seed: Seed = 0
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.15, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _informative_fit(self) -> TabularData:
        if self.n_informative > self.n_features:
            raise ValueError(f"n_informative ({self.n_informative}) is more than n_features "
                             f"({self.n_features})")
        if self.n_classes * 2 > 2 ** self.n_informative:  # make_classification: 2 clusters per class
            raise ValueError(f"{self.n_classes} classes of 2 clusters need n_informative of at least "
                             f"{math.ceil(math.log2(2 * self.n_classes))}, got {self.n_informative}")
        return self


class RegressionData(Strict):
    """Regression (child_tasks.generated.load_regression): make_friedman1 generated from ``data_seed``,
    or the bundled diabetes set; features and target standardised with the training split's statistics."""
    kind: Literal["regression"] = "regression"
    source: Literal["friedman1", "diabetes"] = "friedman1"
    n_samples: whole(1_000_000, 100) = 6000
    n_features: whole(1000, 5) = Field(10, description="friedman1: 5 informative, the rest noise")
    noise: float = Field(1.0, ge=0.0)
    data_seed: Seed = 0
    split_seed: Seed = 0
    val_fraction: float = Field(0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.15, gt=0.0, lt=1.0)


class AddingData(Strict):
    """The adding problem (child_tasks.generated.load_adding), generated from ``data_seed``."""
    kind: Literal["adding"] = "adding"
    seq_len: whole(10_000, 2) = 30
    n_train: DataSize = 6400
    n_val: DataSize = 1000
    n_test: DataSize = 1000
    data_seed: Seed = 0


class OrderData(Strict):
    """The temporal-order problem (child_tasks.generated.load_order), generated from ``data_seed``."""
    kind: Literal["order"] = "order"
    n_symbols: whole(1000, 3) = Field(8, description="one-hot width: the last two are X and Y")
    min_len: whole(10_000, 2) = 20
    max_len: whole(10_000, 2) = 30
    n_train: DataSize = 6400
    n_val: DataSize = 1000
    n_test: DataSize = 1000
    data_seed: Seed = 0
    marks: whole(4, 2) = Field(2, description="marked symbols, one per segment: 2**marks classes")

    @model_validator(mode="after")
    def _lengths_ordered(self) -> OrderData:
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) is more than max_len ({self.max_len})")
        if self.min_len < self.marks:
            raise ValueError(f"min_len ({self.min_len}) is less than marks ({self.marks}): one per segment")
        return self


class LMData(Strict):
    """Sentences of one side of the embedded synthetic language pair, for a language model."""
    kind: Literal["lm"] = "lm"
    side: Literal["source", "target"] = "target"
    n_train: DataSize = 6400
    n_val: DataSize = 500
    n_test: DataSize = 500
    split_seed: Seed = Field(0, description="the sentence generator's seed")
    offset: whole(1_000_000, 0) = Field(0, description="sentences of the generator's stream skipped "
                                        "first: those a translation task of the same seed uses")


DataConfig = Annotated[DigitsData | Mnist1DData | Cifar10Data | NMTData | TabularData | RegressionData
                       | AddingData | OrderData | LMData, Field(discriminator="kind")]


# --- the task ---------------------------------------------------------------------------------------

class Reference(Strict):
    """What a loss reward is normalised against: ``initial`` (the loss before any step) and ``adam``
    (tuned Adam's, each with the task's lr choice), means over ``seeds``. ``fingerprint`` is the task's
    (`child_tasks.reward.fingerprint`) when they were measured: a changed task makes them stale."""
    initial: float
    adam: float
    seeds: Seeds
    fingerprint: str = Field(max_length=256)

    @model_validator(mode="after")
    def _ordered(self) -> Reference:
        if not (math.isfinite(self.initial) and math.isfinite(self.adam) and self.initial > self.adam):
            raise ValueError(f"initial ({self.initial}) must be finite and above adam ({self.adam})")
        return self


class TaskConfig(Strict):
    """What a rule is trained on, for how long, and how it is scored."""
    name: str = Field("", description="the config's name (its file stem)")
    task: Literal["digits", "mnist1d", "cifar10", "nmt", "tabular", "regression", "adding", "order", "lm"]
    model: ModelConfig
    data: DataConfig
    metric: Literal["accuracy", "bleu", "mse", "perplexity"] = Field(
        "accuracy", description="the validation metric: what tables show and panels compare")
    reward: Literal["accuracy", "val_loss", "train_loss"] = Field(
        "accuracy", description="accuracy: the validation metric, 0-100 (NOS's), for metrics where higher "
        "is better; val_loss: the final "
        "validation loss; train_loss: the mean training loss of the run (the area under its curve); the "
        "two losses are normalised against `reference` (1: tuned Adam, 0: no progress)")
    seeds_per_evaluation: Seeds = Field(1, description="training seeds averaged in one evaluation, the "
                                        "same for every rule (common random numbers); at most 64")
    reference: Reference | None = Field(None, description="the loss at initialisation and tuned Adam's, "
                                        "for normalising; measured and cached when missing or stale")
    epochs: Epochs = Field(description=f"passes over the training data, at most {MAX_EPOCHS}")
    batch_size: BatchSize = Field(description=f"examples per step, at most {MAX_BATCH}")
    lr_grid: list[Annotated[float, Field(gt=0.0)]] = Field(min_length=1, max_length=100)
    short_run_epochs: float = Field(gt=0.0, description="length of each lr's short run, in epochs")
    time_limit_s: float | None = Field(None, gt=0.0, description="wall time of one evaluation (grid + run)")
    blowup_factor: float = Field(10.0, gt=1.0, description="a loss above factor x the first loss diverged")
    weight_decay: float = Field(0.0, ge=0.0)
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="lr over the whole run")
    seeds: list[Seed] = Field(default_factory=lambda: [0, 1, 2], min_length=1, max_length=1000)
    eval_batch_size: BatchSize = 1000

    @model_validator(mode="before")
    @classmethod
    def _data_kind_from_task(cls, values: Any) -> Any:
        # The data section's type follows the task; writing it twice in the file would invite mismatch.
        if isinstance(values, Mapping) and isinstance(values.get("task"), str) and values["task"] in TASKS:
            values = dict(values)
            data = values.get("data", {})
            if data is None:
                data = {}
            if isinstance(data, Mapping) and "kind" not in data:
                values["data"] = {**data, "kind": values["task"]}
        return values

    @model_validator(mode="after")
    def _consistent(self) -> TaskConfig:
        if self.data.kind != self.task:
            raise ValueError(f"data.kind is {self.data.kind!r} but task is {self.task!r}")
        if self.model.name not in TASK_MODELS[self.task]:
            wanted = " or ".join(TASK_MODELS[self.task])
            raise ValueError(f"task {self.task!r} needs model {wanted}, got {self.model.name!r}")
        if self.metric not in TASK_METRICS[self.task]:
            owners = " or ".join(t for t, metrics in TASK_METRICS.items() if self.metric in metrics)
            wanted = " or ".join(repr(m) for m in TASK_METRICS[self.task])
            raise ValueError(f"metric {self.metric!r} is for the {owners} task, not {self.task!r} "
                             f"(use {wanted})")
        if self.reward == "accuracy" and not higher_is_better(self.metric):
            raise ValueError(f"reward 'accuracy' scores the metric as higher-is-better, but "
                             f"{self.metric!r} is lower-is-better: use reward 'val_loss' (or 'train_loss')")
        if self.short_run_epochs > self.epochs:
            raise ValueError(f"short_run_epochs ({self.short_run_epochs}) is longer than epochs "
                             f"({self.epochs})")
        return self


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of validation ``metric`` is the better one (accuracy, BLEU) or a smaller
    (mse, perplexity): the one place a metric's direction is known."""
    try:
        return HIGHER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(HIGHER_IS_BETTER)}") from None


# --- loading and error messages ---------------------------------------------------------------------

def config_path(path_or_name: str | Path) -> Path:
    """A bare name (no folder, no suffix) is configs/NAME.yaml; anything else is a path. A ConfigError
    quoting only its start when it is longer than any file's name could be."""
    text = str(path_or_name)
    try:
        check_name(text, "task config name or path")
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if isinstance(path_or_name, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        return Path(path_or_name)
    return CONFIG_DIR / f"{text}.yaml"


def cache_dir() -> Path:
    """Where generated data (MNIST-1D) and measured reference values are cached: ``$NOS_CACHE_DIR``, else
    ``~/.cache/nos``. A cache only: what is in it can always be made again."""
    return Path(path_from_env(None, CACHE_ENV) or Path.home() / ".cache" / "nos")


def available_configs() -> list[str]:
    """Names of the task configs in configs/ (the folder also holds run and cluster configs: a task
    config is a mapping with ``task`` and ``model`` and no ``search`` section)."""
    names = []
    for path in CONFIG_DIR.glob("*.yaml"):
        try:
            raw = load_yaml(path)
        except (ConfigError, OSError):
            continue  # not ours to judge here; load_task_config reports it when asked for by name
        if isinstance(raw, dict) and "task" in raw and "model" in raw and "search" not in raw:
            names.append(path.stem)
    return sorted(names)


def load_task_config(path_or_name: str | Path) -> TaskConfig:
    """Read and validate a task config; raises FileNotFoundError or ConfigError with a clear message."""
    path = config_path(path_or_name)
    if not path.is_file():
        hint = ""
        if path.parent == CONFIG_DIR:
            close = did_you_mean(path.stem, available_configs(), n=1)
            hint = (f" (did you mean {close[0]!r}?)" if close else "") + \
                f"; available configs: {', '.join(available_configs())}"
        raise FileNotFoundError(f"no task config at {path}{hint}")
    raw = expect_mapping(load_yaml(path, "task config"), str(path), "task: ..., model: ...")
    return task_config_from_dict({"name": path.stem, **raw}, source=str(path))


def task_config_from_dict(values: Mapping[str, Any], source: str = "<dict>") -> TaskConfig:
    """Validate a config given as a mapping; ``source`` names it in error messages."""
    try:
        return TaskConfig.model_validate(dict(values))
    except ValidationError as err:
        errors = err.errors()
        # The data section's type follows the task: with a bad task, a missing data section is no news.
        if any(e["loc"] == ("task",) for e in errors):
            errors = [e for e in errors if not (e["loc"] == ("data",) and e["type"] == "missing")]
        raise validation_error(source, "task config", err, TaskConfig, errors=errors) from None


def override(config: TaskConfig, changes: Mapping[str, Any]) -> TaskConfig:
    """A validated copy of ``config`` with ``changes``; dotted keys reach into sections: ``model.width``."""
    values = config.model_dump()
    given = ", ".join(f"{key}={quoted(value)}" for key, value in changes.items())  # a value may be huge
    source = f"{config.name or 'config'} with overrides {{{given}}}"
    for dotted, value in changes.items():
        set_dotted(values, dotted, value, source)
    return task_config_from_dict(values, source=source)

