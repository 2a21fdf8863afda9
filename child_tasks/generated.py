"""Data of the held-out panel tasks: tabular classification, regression, the adding and temporal-order
problems and a language model over the synthetic language, each generated from a fixed seed or read from
scikit-learn's bundled data sets (nothing is downloaded).

* `load_tabular`: ``make_classification`` (generated), or the bundled ``wine`` / ``breast_cancer``; features
  standardised with the training split's statistics. An `ArrayData` with integer labels.
* `load_regression`: ``friedman1`` (``make_friedman1``, generated) or the bundled ``diabetes``; features and
  target standardised with the training split's statistics, so a mean-squared error of 1 is the error of
  predicting the training mean. An `ArrayData` with float targets.
* `load_adding`: the adding problem (Hochreiter & Schmidhuber 1997): sequences of (value, marker) pairs,
  values uniform in [0, 1], exactly two markers (one in each half), the target the sum of the two marked
  values. Predicting the constant 1 has a mean-squared error of 1/6.
* `load_order`: the temporal-order problem (Hochreiter & Schmidhuber 1997, tasks 6a and 6b): one-hot
  sequences of random distractor symbols, of random lengths, with ``marks`` marked symbols (each X or Y,
  2 by default), one in each of that many equal segments; the class is their order read as a binary
  number (two marks: XX, XY, YX, YY: 0-3; three: XXX to YYY: 0-7). Shorter sequences are padded at the
  start with all-zero steps, so that a network read out at the last step reads every sequence's true end.
* `load_synthetic_lm`: sentences of one side of the synthetic language pair
  (`child_tasks.synthetic_language`) as rows BOS, words, EOS, padded with PAD (the ids of
  `child_tasks.translation`); validation and test sentences are unseen in training, and an ``offset``
  skips the sentences that the translation task of the same seed uses.

Every loader is deterministic in its arguments and cached per process, so the tensors it returns are
shared: treat them as read-only. Splits are shuffled once by ``split_seed`` (stratified for classes), so
a rule's training seed never changes them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from child_tasks.translation import Vocab

__all__ = ["ArrayData", "LanguageModelData", "TABULAR_SOURCES", "REGRESSION_SOURCES", "load_tabular",
           "load_regression", "load_adding", "load_order", "load_synthetic_lm"]

TABULAR_SOURCES = ("make_classification", "wine", "breast_cancer")
REGRESSION_SOURCES = ("friedman1", "diabetes")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors elementwise is neither cheap nor a bool
class ArrayData:
    """A supervised task in memory: x_* float32 (N, ...) inputs; y_* int64 class indices in
    [0, num_classes) for classification (``num_classes`` >= 2), float32 (N,) targets for regression
    (``num_classes`` 0). The attribute names are `ImageData`'s, so classification reads it alike."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: bool = False

    def __post_init__(self) -> None:
        # Checked once here so that a malformed loader fails at load time, not deep inside training.
        want = torch.int64 if self.num_classes else torch.float32
        for split in SPLITS:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            shape = tuple(self.x_train.shape[1:])
            if x.dtype != torch.float32 or x.dim() < 2 or tuple(x.shape[1:]) != shape:
                raise ValueError(f"{self.name}: x_{split} must be float32 of shape (N, *{shape}), got "
                                 f"{x.dtype} {tuple(x.shape)}")
            if y.dtype != want or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: y_{split} must be {want} of shape ({x.shape[0]},), got "
                                 f"{y.dtype} {tuple(y.shape)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        kind = f"classes={self.num_classes}" if self.num_classes else "regression"
        return (f"ArrayData({self.name!r}, input_shape={self.input_shape}, {kind}, "
                f"train={len(self.y_train)}, val={len(self.y_val)}, test={len(self.y_test)})")


@dataclass(frozen=True, eq=False)
class LanguageModelData:
    """Sentences as int64 (N, L) rows: BOS, word ids, EOS, then PAD; each split padded to its longest row.
    ``vocab`` is a `child_tasks.translation.Vocab` holding every word the language can use."""

    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    vocab: Vocab

    @property
    def max_len(self) -> int:
        """The longest row of any split, in tokens (BOS and EOS included)."""
        return max(int(t.shape[1]) for t in (self.train, self.val, self.test))


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in "
                         "(0, 1) with a sum below 1")


def _split(x: np.ndarray, y: np.ndarray, split_seed: int, val_fraction: float, test_fraction: float,
           stratify: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import train_test_split

    n_test, n_val = round(test_fraction * len(y)), round(val_fraction * len(y))
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=n_test, random_state=split_seed,
                                                      stratify=y if stratify else None)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=n_val,
                                                      random_state=split_seed,
                                                      stratify=y_rest if stratify else None)
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


def _standardise(splits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every split scaled by the training split's mean and std per column (train only: nothing leaks)."""
    mean, std = splits["train"].mean(axis=0), splits["train"].std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    return {s: (a - mean) / std for s, a in splits.items()}


def _array_data(name: str, xs: dict[str, np.ndarray], ys: dict[str, np.ndarray],
                num_classes: int) -> ArrayData:
    y_type = np.int64 if num_classes else np.float32
    tensors = {}
    for split in SPLITS:
        tensors[f"x_{split}"] = torch.from_numpy(np.ascontiguousarray(xs[split], dtype=np.float32))
        tensors[f"y_{split}"] = torch.from_numpy(np.ascontiguousarray(ys[split], dtype=y_type))
    return ArrayData(name=name, num_classes=num_classes, **tensors)


def load_tabular(source: str = "make_classification", n_samples: int = 6000, n_features: int = 20,
                 n_informative: int = 8, n_classes: int = 4, class_sep: float = 1.0, flip_y: float = 0.02,
                 data_seed: int = 0, split_seed: int = 0, val_fraction: float = 0.15,
                 test_fraction: float = 0.15) -> ArrayData:
    """Tabular classification (module docstring); the ``n_*``, ``class_sep`` and ``flip_y`` options
    shape ``make_classification`` only (the bundled sets are what they are). Cached per arguments."""
    if source not in TABULAR_SOURCES:
        raise ValueError(f"unknown tabular source {source!r}; known: {', '.join(TABULAR_SOURCES)}")
    _check_fractions(val_fraction, test_fraction)
    return _load_tabular(source, int(n_samples), int(n_features), int(n_informative), int(n_classes),
                         float(class_sep), float(flip_y), int(data_seed), int(split_seed),
                         float(val_fraction), float(test_fraction))


@functools.lru_cache(maxsize=4)
def _load_tabular(source: str, n_samples: int, n_features: int, n_informative: int, n_classes: int,
                  class_sep: float, flip_y: float, data_seed: int, split_seed: int, val_fraction: float,
                  test_fraction: float) -> ArrayData:
    from sklearn import datasets

    if source == "make_classification":
        x, y = datasets.make_classification(
            n_samples=n_samples, n_features=n_features, n_informative=n_informative,
            n_redundant=min(2, n_features - n_informative), n_classes=n_classes, n_clusters_per_class=2,
            class_sep=class_sep, flip_y=flip_y, random_state=data_seed)
    else:
        x, y = getattr(datasets, f"load_{source}")(return_X_y=True)
    parts = _split(x, y, split_seed, val_fraction, test_fraction, stratify=True)
    xs = _standardise({s: parts[s][0] for s in SPLITS})
    return _array_data(source, xs, {s: parts[s][1] for s in SPLITS}, int(y.max()) + 1)


def load_regression(source: str = "friedman1", n_samples: int = 6000, n_features: int = 10,
                    noise: float = 1.0, data_seed: int = 0, split_seed: int = 0, val_fraction: float = 0.15,
                    test_fraction: float = 0.15) -> ArrayData:
    """Regression (module docstring); ``n_samples``, ``n_features`` (at least 5) and ``noise`` shape
    ``friedman1`` only. Cached per arguments."""
    if source not in REGRESSION_SOURCES:
        raise ValueError(f"unknown regression source {source!r}; known: {', '.join(REGRESSION_SOURCES)}")
    _check_fractions(val_fraction, test_fraction)
    return _load_regression(source, int(n_samples), int(n_features), float(noise), int(data_seed),
                            int(split_seed), float(val_fraction), float(test_fraction))


@functools.lru_cache(maxsize=4)
def _load_regression(source: str, n_samples: int, n_features: int, noise: float, data_seed: int,
                     split_seed: int, val_fraction: float, test_fraction: float) -> ArrayData:
    from sklearn import datasets

    if source == "friedman1":
        x, y = datasets.make_friedman1(n_samples=n_samples, n_features=n_features, noise=noise,
                                       random_state=data_seed)
    else:
        x, y = datasets.load_diabetes(return_X_y=True)
    parts = _split(x, y, split_seed, val_fraction, test_fraction, stratify=False)
    xs = _standardise({s: parts[s][0] for s in SPLITS})
    ys = _standardise({s: parts[s][1] for s in SPLITS})
    return _array_data(source, xs, ys, 0)


def load_adding(seq_len: int = 30, n_train: int = 6400, n_val: int = 1000, n_test: int = 1000,
                data_seed: int = 0) -> ArrayData:
    """The adding problem (module docstring): x float32 (N, seq_len, 2) of (value, marker), y float32 (N,).
    One stream drawn from ``data_seed`` gives train, then validation, then test. Cached per arguments."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be at least 2 (a marker in each half), got {seq_len}")
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"n_train, n_val and n_test must be >= 1, got {n_train}, {n_val}, {n_test}")
    return _load_adding(int(seq_len), int(n_train), int(n_val), int(n_test), int(data_seed))


@functools.lru_cache(maxsize=4)
def _load_adding(seq_len: int, n_train: int, n_val: int, n_test: int, data_seed: int) -> ArrayData:
    rng = np.random.default_rng(data_seed)
    n = n_train + n_val + n_test
    values = rng.uniform(0.0, 1.0, size=(n, seq_len))
    half = seq_len // 2
    first, second = rng.integers(0, half, size=n), rng.integers(half, seq_len, size=n)
    markers = np.zeros((n, seq_len))
    rows = np.arange(n)
    markers[rows, first] = markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = values[rows, first] + values[rows, second]
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    return _array_data("adding", {s: x[a:b] for s, (a, b) in bounds.items()},
                       {s: y[a:b] for s, (a, b) in bounds.items()}, 0)


def load_order(n_symbols: int = 8, min_len: int = 20, max_len: int = 30, n_train: int = 6400,
               n_val: int = 1000, n_test: int = 1000, data_seed: int = 0, marks: int = 2) -> ArrayData:
    """The temporal-order problem (module docstring): x float32 (N, max_len, n_symbols) one-hot (the last
    two symbols are X and Y, the others distractors), y int64 (N,) in 0 to 2**marks - 1. One stream drawn
    from ``data_seed`` gives train, then validation, then test. Cached per arguments."""
    if not 2 <= marks <= 4:
        raise ValueError(f"marks must be 2, 3 or 4, got {marks}")
    if min_len < marks:
        raise ValueError(f"min_len must be at least marks (one marked symbol per segment), got {min_len}")
    if n_symbols < 3:
        raise ValueError(f"n_symbols must be at least 3 (a distractor, X and Y), got {n_symbols}")
    if not 2 <= min_len <= max_len:
        raise ValueError(f"min_len and max_len must satisfy 2 <= min_len <= max_len, got {min_len}, "
                         f"{max_len}")
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"n_train, n_val and n_test must be >= 1, got {n_train}, {n_val}, {n_test}")
    return _load_order(int(n_symbols), int(min_len), int(max_len), int(n_train), int(n_val), int(n_test),
                       int(data_seed), int(marks))


@functools.lru_cache(maxsize=4)
def _load_order(n_symbols: int, min_len: int, max_len: int, n_train: int, n_val: int, n_test: int,
                data_seed: int, marks: int = 2) -> ArrayData:
    rng = np.random.default_rng(data_seed)
    n = n_train + n_val + n_test
    lengths = rng.integers(min_len, max_len + 1, size=n)
    start = max_len - lengths  # padded at the start: every sequence ends at the last step
    # Segment k of each sequence is [length * k // marks, length * (k + 1) // marks): one mark in each.
    edges = [lengths * k // marks for k in range(marks + 1)]
    where = [start + edges[k] + (rng.random(n) * (edges[k + 1] - edges[k])).astype(np.int64)
             for k in range(marks)]
    which = rng.integers(0, 2, size=(n, marks))  # 0: X, 1: Y
    symbols = rng.integers(0, n_symbols - 2, size=(n, max_len))
    rows = np.arange(n)
    for k in range(marks):
        symbols[rows, where[k]] = n_symbols - 2 + which[:, k]
    x = np.eye(n_symbols, dtype=np.float32)[symbols]
    x[np.arange(max_len)[None, :] < start[:, None]] = 0.0
    y = which @ (2 ** np.arange(marks - 1, -1, -1))  # the marks in order, read as a binary number
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    return _array_data("order", {s: x[a:b] for s, (a, b) in bounds.items()},
                       {s: y[a:b] for s, (a, b) in bounds.items()}, 2 ** marks)


def load_synthetic_lm(n_train: int = 6400, n_val: int = 500, n_test: int = 500, side: str = "target",
                      seed: int = 0, offset: int = 0) -> LanguageModelData:
    """Sentences of the synthetic language's ``side`` ("source": English-like, or "target": the invented
    language with agreement), distinct across all splits, drawn with ``seed`` after skipping the stream's
    first ``offset`` sentences: `child_tasks.translation.synthetic_translation` with the same seed takes
    its sentences from the start of the same stream, and the stream never repeats a source sentence, so an
    offset at least its n_train + n_val + n_test keeps the two disjoint. Cached per arguments."""
    if side not in ("source", "target"):
        raise ValueError(f"side must be 'source' or 'target', got {side!r}")
    if min(n_train, n_val, n_test) < 1:
        raise ValueError(f"n_train, n_val and n_test must be >= 1, got {n_train}, {n_val}, {n_test}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    return _load_synthetic_lm(int(n_train), int(n_val), int(n_test), side, int(seed), int(offset))


@functools.lru_cache(maxsize=4)
def _load_synthetic_lm(n_train: int, n_val: int, n_test: int, side: str, seed: int,
                       offset: int = 0) -> LanguageModelData:
    from child_tasks import synthetic_language
    from child_tasks.translation import BOS, EOS, SPECIALS, Vocab, _tensor

    words = synthetic_language.target_words() if side == "target" else synthetic_language.source_words()
    vocab = Vocab([*SPECIALS, *words])
    pairs = synthetic_language.generate_pairs(offset + n_train + n_val + n_test, seed)[offset:]
    rows = [[BOS, *vocab.encode(pair[1 if side == "target" else 0]), EOS] for pair in pairs]
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(rows))}
    return LanguageModelData(name=f"synthetic-{side}", vocab=vocab,
                             **{s: _tensor(rows[a:b]) for s, (a, b) in bounds.items()})
