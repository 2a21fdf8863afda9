"""Image classification data for the child tasks: the in-memory container, the embedded default
(scikit-learn's bundled 8x8 digits), batch augmentation, and the registry of image tasks.

A child network is trained thousands of times during a search, so data is loaded once per process and
kept as ready-to-use tensors: `ImageData` holds float32 images in NCHW layout, already normalised per
channel with statistics of the *training* split, and int64 labels. Training code slices batches out of
these tensors directly; nothing is decoded or converted per step. Loaders are cached per arguments, so
the tensors they return are shared: treat them as read-only (index them, never modify them in place).

Nothing is downloaded: `digits` ships inside scikit-learn, and `cifar10` (see `child_tasks.cifar10`)
reads files the user already has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ImageData", "augment_batch", "load_digits", "load_image_task", "IMAGE_TASKS"]


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors elementwise is neither cheap nor a bool
class ImageData:
    """An image classification task held in memory.

    x_* are float32 (N, C, H, W) images, or (N, C, L) signals (MNIST-1D), normalised per channel with the
    training split's mean and std (`channel_mean`, `channel_std`, in the units of the raw data; empty
    where the loader normalised the data itself); y_* are int64 class indices in
    [0, num_classes). `augment` says whether training should pass its batches through `augment_batch`.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: bool = False
    channel_mean: tuple[float, ...] = ()
    channel_std: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # Checked once here so that a malformed loader fails at load time, not deep inside training.
        shape = None
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.dtype != torch.float32 or x.dim() not in (3, 4):
                raise ValueError(f"{self.name}: x_{split} must be float32 (N, C, H, W) or (N, C, L), got "
                                 f"{x.dtype} "
                                 f"{tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: y_{split} must be int64 of shape ({x.shape[0]},), got "
                                 f"{y.dtype} {tuple(y.shape)}")
            if shape is not None and tuple(x.shape[1:]) != shape:
                raise ValueError(f"{self.name}: x_{split} has images of shape {tuple(x.shape[1:])}, "
                                 f"the training split {shape}")
            shape = tuple(x.shape[1:])
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(f"{self.name}: y_{split} has labels outside [0, {self.num_classes})")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(channels, height, width) of one image, or (channels, length) of one signal."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (f"ImageData({self.name!r}, input_shape={self.input_shape}, classes={self.num_classes}, "
                f"train={len(self.y_train)}, val={len(self.y_val)}, test={len(self.y_test)}, "
                f"augment={self.augment})")


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float64, population std) of x (N, C, H, W) of any numeric dtype."""
    total = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    # In float64 and by chunks of images: exact enough for 50,000 CIFAR images without a float64 copy.
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].astype(np.float64)
        total += part.sum(axis=(0, 2, 3))
        squares += np.square(part).sum(axis=(0, 2, 3))
    count = len(x) * x.shape[2] * x.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean ** 2, 0.0))
    return mean, std


def normalise_splits(name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]], num_classes: int,
                     augment: bool = False) -> ImageData:
    """Build an `ImageData` from raw (x (N, C, H, W) of any numeric dtype, y) arrays per split ("train",
    "val", "test"), normalising every split with the per-channel mean and std of the train split."""
    # Statistics from train only: validation is the reward and test is reported, neither may leak in.
    mean, std = channel_stats(splits["train"][0])
    std = np.where(std > 1e-12, std, 1.0)  # a constant channel becomes zero instead of NaN
    mean_t = torch.from_numpy(mean).float()[None, :, None, None]
    std_t = torch.from_numpy(std).float()[None, :, None, None]
    tensors = {}
    for split, (x, y) in splits.items():
        # np.array copies (also when x is float32 already), so normalising in place never touches x.
        images = torch.from_numpy(np.array(x, dtype=np.float32, order="C"))
        tensors[f"x_{split}"] = images.sub_(mean_t).div_(std_t)
        tensors[f"y_{split}"] = torch.from_numpy(np.array(y, dtype=np.int64))
    return ImageData(name=name, num_classes=num_classes, augment=augment,
                     channel_mean=tuple(float(v) for v in mean), channel_std=tuple(float(v) for v in std),
                     **tensors)


def load_digits(seed: int = 0, val_fraction: float = 0.2, test_fraction: float = 0.2) -> ImageData:
    """scikit-learn's bundled handwritten digits (1797 images, 8x8, 10 classes) as (N, 1, 8, 8), split into
    train/validation/test by a stratified shuffle fixed by `seed` (the data split's seed, independent of
    any training seed). Cached per arguments."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in "
                         "(0, 1) with a sum below 1")
    return _load_digits(int(seed), float(val_fraction), float(test_fraction))


@functools.lru_cache(maxsize=8)
def _load_digits(seed: int, val_fraction: float, test_fraction: float) -> ImageData:
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    bunch = sklearn_digits()
    x = bunch.data.reshape(-1, 1, 8, 8)
    y = bunch.target
    n = len(y)
    n_test, n_val = round(test_fraction * n), round(val_fraction * n)
    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=n_test, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=n_val, stratify=y_rest,
                                                      random_state=seed)
    return normalise_splits("digits", {"train": (x_train, y_train), "val": (x_val, y_val),
                                       "test": (x_test, y_test)}, num_classes=10)


def augment_batch(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding by `pad` pixels, and random horizontal flip (probability 1/2), per
    image of the batch x (N, C, H, W); returns a new tensor of the same shape, on x's device.

    One gather for the whole batch, no Python loop over images. The random draws come from `generator`
    (on its own device, then moved to x's), so the result is a function of x and the generator's state,
    on CPU and CUDA alike. Zero padding of normalised data pads with the training mean colour.
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects (N, C, H, W), got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    g_device = generator.device
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=g_device).to(x.device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=g_device).to(x.device).bool()
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad)) if pad else x
    hp, wp = h + 2 * pad, w + 2 * pad
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)            # (N, H)
    cols = torch.arange(w, device=x.device).expand(n, w)
    cols = offsets[1, :, None] + torch.where(flips[:, None], (w - 1) - cols, cols)  # (N, W)
    # Flat index into each padded image, shared by its channels: one gather does crop and flip.
    index = (rows[:, :, None] * wp + cols[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
    return padded.reshape(n, c, hp * wp).gather(2, index).reshape(n, c, h, w)


def _load_cifar10(**options) -> ImageData:
    from child_tasks.cifar10 import load_cifar10  # imported on use: digits users never need it

    return load_cifar10(**options)


IMAGE_TASKS: dict[str, Callable[..., ImageData]] = {"digits": load_digits, "cifar10": _load_cifar10}


def load_image_task(name: str, **options) -> ImageData:
    """The image task `name` ("digits" or "cifar10"), loaded with its loader's keyword options."""
    try:
        loader = IMAGE_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown image task {name!r}; known: {', '.join(sorted(IMAGE_TASKS))}") from None
    return loader(**options)
