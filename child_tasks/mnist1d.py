"""MNIST-1D (Greydanus & Kobak, "Scaling down deep learning with MNIST-1D"): an embedded task that needs
no download and tells optimizers apart, where 8x8 digits cannot.

The `mnist1d` package builds the data procedurally from ten 1D templates (shifts, scaling, shear,
correlated and iid noise) with `mnist1d.data.make_dataset(args)`; its `get_dataset` is never called,
because by default it tries a download with no timeout. Generation takes a few seconds, so the arrays
are cached twice: per process (a search's driver builds them once, its workers share them) and on disk
as a plain ``.npz`` (read with ``allow_pickle=False``) under `child_tasks.config.cache_dir`, keyed by every
argument that changes them. A cache file that cannot be read is rebuilt, never trusted.

The generator's samples are pooled and split into train/validation/test by a stratified shuffle fixed by
``split_seed``, as digits is split, so more samples give a finer validation metric. Signals are
float32 of shape (N, 1, length): one channel, as a 1D ConvNet reads them (mnist1d already centres the
data and scales it to unit std; the split is not re-normalised, so train statistics cannot leak).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

from child_tasks.config import cache_dir
from configuration.files import write_atomic
from child_tasks.image_data import ImageData

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the arrays written to the cache change meaning


def _generator_args(num_samples: int, data_seed: int) -> dict:
    """The package's default arguments (the paper's dataset), with our sample count and seed."""
    import mnist1d.data  # imported on use: other tasks never need it

    args = mnist1d.data.get_dataset_args(as_dict=True)
    args.update(num_samples=int(num_samples), seed=int(data_seed), train_split=1.0)
    args.pop("url", None)  # never used: nothing is downloaded
    return args


def _cache_path(args: dict) -> Path:
    key = hashlib.sha256(json.dumps({**args, "format": FORMAT_VERSION}, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "mnist1d" / f"{key[:20]}.npz"


def generate(num_samples: int = 5000, data_seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """All generated signals (float32 (N, length)) and labels (int64 (N,)), from the disk cache when it
    holds them; raises ImportError with the install command when the package is missing."""
    try:
        import mnist1d.data  # noqa: F401
    except ImportError as err:
        raise ImportError("the mnist1d task needs the 'mnist1d' package: pip install mnist1d "
                          f"(it was not found: {err})") from None
    args = _generator_args(num_samples, data_seed)
    path = _cache_path(args)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                x, y = f["x"], f["y"]
            if x.ndim == 2 and y.shape == (len(x),):
                return x.astype(np.float32), y.astype(np.int64)
        except (OSError, ValueError, KeyError) as err:
            log.warning("mnist1d cache %s is unreadable (%s); rebuilding it", path, err)
    x, y = _make(args)
    try:  # the cache is an optimisation: a read-only home must not stop a search
        buffer = io.BytesIO()
        np.savez(buffer, x=x, y=y)
        write_atomic(buffer.getvalue(), path)
    except OSError as err:
        log.warning("could not cache mnist1d data at %s: %s", path, err)
    return x, y


def _make(args: dict) -> tuple[np.ndarray, np.ndarray]:
    import mnist1d.data
    from mnist1d.utils import ObjectView

    # make_dataset seeds numpy's and random's global generators: keep the caller's streams untouched.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = mnist1d.data.make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"], dtype=np.int64)


def load_mnist1d(num_samples: int = 5000, data_seed: int = 42, split_seed: int = 0,
                 val_fraction: float = 0.2, test_fraction: float = 0.2) -> ImageData:
    """MNIST-1D as (N, 1, length) float32 signals with int64 labels, split train/val/test by a stratified
    shuffle fixed by ``split_seed``. Cached per arguments (read-only tensors, shared)."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in "
                         "(0, 1) with a sum below 1")
    if num_samples < 100:
        raise ValueError(f"num_samples must be at least 100 (10 per class in every split), got {num_samples}")
    return _load(int(num_samples), int(data_seed), int(split_seed), float(val_fraction), float(test_fraction))


@functools.lru_cache(maxsize=4)
def _load(num_samples: int, data_seed: int, split_seed: int, val_fraction: float,
          test_fraction: float) -> ImageData:
    from sklearn.model_selection import train_test_split

    x, y = generate(num_samples, data_seed)
    n_test, n_val = round(test_fraction * len(y)), round(val_fraction * len(y))
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=n_test, stratify=y,
                                                      random_state=split_seed)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=n_val, stratify=y_rest,
                                                      random_state=split_seed)
    tensors = {}
    splits = {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}
    for split, (xs, ys) in splits.items():
        tensors[f"x_{split}"] = torch.from_numpy(np.ascontiguousarray(xs[:, None, :], dtype=np.float32))
        tensors[f"y_{split}"] = torch.from_numpy(np.asarray(ys, dtype=np.int64))
    return ImageData(name="mnist1d", num_classes=10, **tensors)
