"""Image classification tasks for the child networks: the embedded default (scikit-learn's bundled 8x8
digits), batch augmentation, and the registry of image tasks, each loading into an `ImageData`
(`child_tasks.image_data`). Loaders are cached per arguments, so the tensors they return are shared:
treat them as read-only (index them, never modify them in place).

Nothing is downloaded: `digits` ships inside scikit-learn, and `cifar10` (see `child_tasks.cifar10`)
reads files the user already has.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

from child_tasks.cifar10 import load_cifar10
from child_tasks.image_data import ImageData, normalise_splits

__all__ = ["augment_batch", "load_digits", "load_image_task", "IMAGE_TASKS"]


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


IMAGE_TASKS: dict[str, Callable[..., ImageData]] = {"digits": load_digits, "cifar10": load_cifar10}


def load_image_task(name: str, **options) -> ImageData:
    """The image task `name` ("digits" or "cifar10"), loaded with its loader's keyword options."""
    try:
        loader = IMAGE_TASKS[name]
    except KeyError:
        raise ValueError(f"unknown image task {name!r}; known: {', '.join(sorted(IMAGE_TASKS))}") from None
    return loader(**options)
