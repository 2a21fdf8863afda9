"""Tiny task configs and data for the child-task tests: real code paths, a few milliseconds per run."""

from __future__ import annotations

import torch

from child_tasks.config import TaskConfig, load_task_config, override
from child_tasks.image_data import ImageData


def tiny_digits(**changes) -> TaskConfig:
    """The digits task cut down: width 4, 2 epochs of 8 steps, a grid of two lrs."""
    return override(load_task_config("digits"), {"model.width": 4, "epochs": 2, "batch_size": 128,
                                                 "short_run_epochs": 1, "lr_grid": [0.01, 0.1], **changes})


def fake_images(shape=(3, 32, 32), n=(40, 20, 20), classes=10, augment=False, seed=0) -> ImageData:
    """Random images with labels: an ImageData in the real container, for configs whose data is absent."""
    gen = torch.Generator().manual_seed(seed)
    splits = {}
    for split, count in zip(("train", "val", "test"), n):
        splits[f"x_{split}"] = torch.randn(count, *shape, generator=gen)
        splits[f"y_{split}"] = torch.randint(0, classes, (count,), generator=gen)
    return ImageData(name="fake", num_classes=classes, augment=augment, **splits)
