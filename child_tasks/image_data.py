"""Image data in memory: `ImageData`, the container every image or signal task loads into, and
`normalise_splits`, which builds one from raw arrays with the training split's channel statistics.

A child network is trained thousands of times during a search, so data is loaded once per process and
kept as ready-to-use tensors: `ImageData` holds float32 images in NCHW layout (or NCL signals), already
normalised per channel with statistics of the *training* split, and int64 labels. Training code slices
batches out of these tensors directly; nothing is decoded or converted per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ImageData", "channel_stats", "normalise_splits"]


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
