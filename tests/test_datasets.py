"""Image data: the digits split (sizes, disjoint, stratified, seeded), normalisation with train statistics,
crop+flip augmentation on whole batches, and the registry of image tasks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits

from child_tasks.datasets import _load_digits, augment_batch, load_digits, load_image_task
from child_tasks.image_data import ImageData

RAW = sklearn_digits()
WHERE = {image.tobytes(): i for i, image in enumerate(RAW.data)}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def raw_indices(data: ImageData, split: str) -> list[int]:
    """Which of sklearn's images a split holds, found by undoing the normalisation."""
    x = getattr(data, f"x_{split}")
    restored = (x * data.channel_std[0] + data.channel_mean[0]).round().double().reshape(len(x), 64)
    return [WHERE[image.tobytes()] for image in restored.numpy()]


def test_digits_split_sizes_are_disjoint_and_cover_the_data():
    assert len(WHERE) == len(RAW.data)  # no duplicate images, so an image identifies its index
    data = load_digits()
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (1079, 359, 359)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10 and not data.augment
    assert data.x_train.dtype == torch.float32 and data.y_val.dtype == torch.int64
    splits = {split: raw_indices(data, split) for split in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == list(range(len(RAW.data)))
    for split, indices in splits.items():  # labels travel with their images
        assert getattr(data, f"y_{split}").tolist() == RAW.target[indices].tolist()


@pytest.mark.parametrize("split, fraction", [("train", 0.6), ("val", 0.2), ("test", 0.2)])
def test_digits_split_is_stratified(split: str, fraction: float):
    counts = torch.bincount(getattr(load_digits(), f"y_{split}"), minlength=10).numpy()
    expected = fraction * np.bincount(RAW.target)
    assert np.abs(counts - expected).max() <= 1.5


def test_digits_split_is_seeded_and_deterministic():
    a = load_digits(seed=0)
    assert load_digits(0, 0.2, 0.2) is a  # cached: the data is built once per process
    rebuilt = _load_digits.__wrapped__(0, 0.2, 0.2)  # the uncached loader gives the same split
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(rebuilt, name))
    b = load_digits(seed=1)
    assert set(raw_indices(a, "test")) != set(raw_indices(b, "test"))
    small = load_digits(val_fraction=0.1, test_fraction=0.3)
    assert (len(small.y_val), len(small.y_test)) == (180, 539)


def test_normalisation_uses_train_statistics():
    data = load_digits()
    train = RAW.data[raw_indices(data, "train")]
    assert data.channel_mean == pytest.approx((train.mean(),))
    assert data.channel_std == pytest.approx((train.std(),))
    assert abs(float(data.x_train.mean())) < 1e-5 and abs(float(data.x_train.std(unbiased=False)) - 1) < 1e-5
    # Validation and test are scaled with the same numbers, so their mean is near but not exactly zero.
    val = RAW.data[raw_indices(data, "val")]
    assert float(data.x_val.mean()) == pytest.approx((val.mean() - train.mean()) / train.std(), abs=1e-5)
    assert float(data.x_val.mean()) != 0


@pytest.mark.parametrize("fractions", [(0.0, 0.2), (0.2, 1.0), (0.5, 0.5), (-0.1, 0.2)])
def test_digits_rejects_bad_fractions(fractions: tuple[float, float]):
    with pytest.raises(ValueError, match="must be in"):
        load_digits(val_fraction=fractions[0], test_fraction=fractions[1])


def test_image_data_checks_its_tensors():
    x, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="y_val must be int64"):
        ImageData("t", x, y, x, y.int(), x, y, num_classes=10)
    with pytest.raises(ValueError, match="x_test has images of shape"):
        ImageData("t", x, y, x, y, torch.zeros(4, 1, 4, 4), y, num_classes=10)
    with pytest.raises(ValueError, match="labels outside"):
        ImageData("t", x, y + 10, x, y, x, y, num_classes=10)


def test_registry():
    assert load_image_task("digits") is load_digits()
    assert load_image_task("digits", seed=1) is load_digits(seed=1)
    with pytest.raises(ValueError, match="unknown image task 'mnist'; known: cifar10, digits"):
        load_image_task("mnist")


def distinct_batch(n: int = 64, c: int = 2, h: int = 6, w: int = 5) -> torch.Tensor:
    # Every pixel distinct and nonzero, so a crop/flip is recognisable and padding (zeros) is visible.
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).reshape(n, c, h, w)


def candidates(image: torch.Tensor, pad: int) -> list[tuple[int, int, bool, torch.Tensor]]:
    """Every crop of the zero-padded image, plain and flipped: (dy, dx, flipped, view)."""
    _, h, w = image.shape
    padded = torch.nn.functional.pad(image, (pad, pad, pad, pad))
    out = []
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            crop = padded[:, dy:dy + h, dx:dx + w]
            out += [(dy, dx, False, crop), (dy, dx, True, crop.flip(-1))]
    return out


@pytest.mark.parametrize("device", DEVICES)
def test_augment_crops_and_flips_every_image(device: str):
    x = distinct_batch().to(device)
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    seen = []
    for image, result in zip(x.cpu(), out.cpu()):
        matches = [(dy, dx, f) for dy, dx, f, view in candidates(image, 2) if torch.equal(view, result)]
        assert len(matches) == 1  # each output is exactly one crop, plain or flipped
        seen.append(matches[0])
    assert {f for _, _, f in seen} == {True, False}  # some images flipped, some not
    assert len({(dy, dx) for dy, dx, _ in seen}) > 10  # offsets vary across the batch
    assert any((dy, dx) != (2, 2) for dy, dx, _ in seen)  # and really crop (some padding shows)
    assert (out == 0).any() and not (x == 0).any()


def test_augment_is_deterministic_given_the_generator():
    x = distinct_batch()
    a = augment_batch(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, augment_batch(x, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, augment_batch(x, torch.Generator().manual_seed(8)))
    generator = torch.Generator().manual_seed(7)
    first, second = augment_batch(x, generator), augment_batch(x, generator)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances
    assert torch.equal(x, distinct_batch())  # the input is untouched


def test_augment_without_padding_only_flips():
    x = distinct_batch()
    out = augment_batch(x, torch.Generator().manual_seed(0), pad=0)
    flipped = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(out, x)])
    plain = torch.tensor([torch.equal(o, i) for o, i in zip(out, x)])
    assert bool((flipped | plain).all()) and flipped.any() and plain.any()
    with pytest.raises(ValueError, match="pad must be >= 0"):
        augment_batch(x, torch.Generator(), pad=-1)
    with pytest.raises(ValueError, match=r"expects \(N, C, H, W\)"):
        augment_batch(x[0], torch.Generator())
