"""CIFAR-10 reader: a small archive in the real format (Python 2 protocol-2 pickles with bytes keys, in
cifar-10-batches-py/ and as a .tar.gz), read through both layouts and the environment variable; missing,
corrupt, unsafe and malformed files give clear errors naming the path; the download and its command."""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from child_tasks import cifar10
from child_tasks.cifar10 import (CIFAR10DownloadError, CIFAR10Error, CIFAR10NotFoundError, load_cifar10,
                                 read_cifar10)
from child_tasks.datasets import load_image_task
from search.cli import app

PER_BATCH = 20  # images per batch of the small archive: 5 * 20 train, 20 test
LABEL_NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship",
               b"truck"]


def py2_pickle(obj) -> bytes:
    """obj as Python 2's cPickle.dump(obj, f, 2) wrote the CIFAR-10 batches: str as BINSTRING (read back
    as bytes with encoding="bytes"), numpy arrays through numpy.core.multiarray._reconstruct."""
    out = bytearray(b"\x80\x02")

    def emit(o) -> None:
        if o is None:
            out.extend(b"N")
        elif isinstance(o, bool):
            out.extend(b"\x88" if o else b"\x89")
        elif isinstance(o, int):
            out.extend(b"K" + bytes([o]) if 0 <= o < 256 else b"J" + struct.pack("<i", o))
        elif isinstance(o, (bytes, str)):
            raw = o.encode("latin-1") if isinstance(o, str) else o
            out.extend((b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<I", len(raw)))
                       + raw)
        elif isinstance(o, tuple):
            out.extend(b"(")
            for item in o:
                emit(item)
            out.extend(b"t")
        elif isinstance(o, list):
            out.extend(b"](")
            for item in o:
                emit(item)
            out.extend(b"e")
        elif isinstance(o, dict):
            out.extend(b"}(")
            for key, value in o.items():
                emit(key)
                emit(value)
            out.extend(b"u")
        elif isinstance(o, np.dtype):
            out.extend(b"cnumpy\ndtype\n")
            emit((o.str[1:], 0, 1))
            out.extend(b"R")
            emit((3, o.str[0], None, None, None, -1, -1, 0))
            out.extend(b"b")
        elif isinstance(o, np.ndarray):
            out.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n")
            emit((0,))
            emit("b")
            out.extend(b"\x87R")
            emit((1, o.shape, o.dtype, False, o.tobytes()))
            out.extend(b"b")
        else:
            raise TypeError(type(o))

    emit(obj)
    out.extend(b".")
    return bytes(out)


def images(batch: int) -> np.ndarray:
    """Distinct, known pixels per batch: uint8 (PER_BATCH, 3072) in CIFAR's R, G, B planes order."""
    rng = np.random.default_rng(batch)
    return rng.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)


def labels(batch: int) -> list[int]:
    return [(i + batch) % 10 for i in range(PER_BATCH)]


def batch_files() -> dict[str, bytes]:
    files = {f"data_batch_{b}": py2_pickle({b"batch_label": f"training batch {b} of 5", b"labels": labels(b),
                                            b"data": images(b), b"filenames": [b"x.png"] * PER_BATCH})
             for b in range(1, 6)}
    files["test_batch"] = py2_pickle({b"batch_label": "testing batch 1 of 1", b"labels": labels(0),
                                      b"data": images(0), b"filenames": [b"x.png"] * PER_BATCH})
    files["batches.meta"] = py2_pickle({b"label_names": LABEL_NAMES, b"num_cases_per_batch": PER_BATCH,
                                        b"num_vis": 3072})
    return files


def write_dir(root: Path, files: dict[str, bytes]) -> Path:
    batches = root / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name, data in files.items():
        (batches / name).write_bytes(data)
    return batches


def write_archive(file: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(file, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return file


@pytest.fixture
def batches_dir(tmp_path: Path) -> Path:
    return write_dir(tmp_path / "extracted", batch_files())


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return write_archive(tmp_path / "cifar-10-python.tar.gz", batch_files())


def test_fixture_is_a_python2_pickle_with_bytes_keys():
    data = batch_files()["data_batch_1"]
    opcodes = {op.name for op, _, _ in pickletools.genops(data)}
    assert {"PROTO", "GLOBAL", "SHORT_BINSTRING", "BINSTRING"} <= opcodes and "BINUNICODE" not in opcodes
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in data
    batch = pickle.loads(data, encoding="bytes")  # the standard library reads it as it reads the real files
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (PER_BATCH, 3072)


@pytest.mark.parametrize("layout", ["batches_dir", "parent_dir", "archive", "archive_dir"])
def test_reads_every_layout(layout: str, batches_dir: Path, archive: Path):
    path = {"batches_dir": batches_dir, "parent_dir": batches_dir.parent, "archive": archive,
            "archive_dir": archive.parent}[layout]
    x_train, y_train, x_test, y_test, names = read_cifar10(path)
    assert x_train.shape == (5 * PER_BATCH, 3, 32, 32) and x_train.dtype == np.uint8
    assert y_train.tolist() == sum((labels(b) for b in range(1, 6)), [])
    assert y_test.tolist() == labels(0)
    # Rows are 1024 red, then green, then blue values, each plane row-major 32x32.
    raw = images(0)
    assert x_test[3, 2, 5, 7] == raw[3, 2 * 1024 + 5 * 32 + 7]
    np.testing.assert_array_equal(x_train[PER_BATCH:2 * PER_BATCH].reshape(PER_BATCH, -1), images(2))
    assert names[0] == "airplane" and names[9] == "truck"


def test_load_splits_and_normalises_with_train_statistics(archive: Path):
    data = load_cifar10(archive, val_size=20, seed=0)
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (80, 20, 20)
    assert data.input_shape == (3, 32, 32) and data.num_classes == 10 and not data.augment
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    # Stratified: 2 validation images of each class.
    assert torch.bincount(data.y_val, minlength=10).tolist() == [2] * 10
    # Train has mean 0 and std 1 per channel; the statistics are those of the train images alone.
    assert data.x_train.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert (data.x_train.std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-5
    mean, std = torch.tensor(data.channel_mean), torch.tensor(data.channel_std)
    restored = data.x_test * std[None, :, None, None] + mean[None, :, None, None]
    np.testing.assert_allclose(restored.numpy(), images(0).reshape(-1, 3, 32, 32), atol=1e-3)
    # Train and validation partition the 100 training images, and the statistics are train's alone.
    raw, *_ = read_cifar10(archive)
    where = {image.tobytes(): i for i, image in enumerate(raw)}

    def indices(x: torch.Tensor) -> list[int]:
        restored = (x * std[None, :, None, None] + mean[None, :, None, None]).round().to(torch.uint8)
        return [where[image.tobytes()] for image in restored.numpy()]

    train, val = indices(data.x_train), indices(data.x_val)
    assert sorted(train + val) == list(range(100))
    np.testing.assert_allclose(data.channel_mean, raw[train].mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(data.channel_std, raw[train].std(axis=(0, 2, 3)))
    assert not np.allclose(data.channel_mean, raw.mean(axis=(0, 2, 3)))


def test_load_is_seeded_cached_and_registered(archive: Path, batches_dir: Path):
    a = load_cifar10(archive, val_size=20, seed=0, augment=True)
    assert a is load_cifar10(str(archive), val_size=20, seed=0, augment=True)  # cached: loaded once
    assert a.augment
    other = load_cifar10(archive, val_size=20, seed=1)
    assert not torch.equal(a.y_val, other.y_val) or not torch.equal(a.x_val, other.x_val)
    fresh = load_cifar10(batches_dir, val_size=20, seed=0)
    torch.testing.assert_close(fresh.x_val, a.x_val)  # same files, same split, whichever layout
    assert load_image_task("cifar10", path=archive, val_size=20) is load_cifar10(archive, val_size=20)


def test_environment_variable(archive: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NOS_CIFAR10", str(archive.parent))
    assert len(load_cifar10(val_size=10).y_train) == 90
    monkeypatch.delenv("NOS_CIFAR10")
    with pytest.raises(CIFAR10NotFoundError, match="NOS_CIFAR10 is not set.*nos data cifar10 DEST"):
        load_cifar10()


def check_message(err: pytest.ExceptionInfo, path: Path) -> None:
    message = str(err.value)
    assert str(path) in message
    assert "nos data cifar10 DEST" in message and cifar10.CIFAR10_URL in message


@pytest.mark.parametrize("layout", ["dir", "archive"])
def test_missing_file_names_the_path(layout: str, tmp_path: Path):
    files = batch_files()
    del files["data_batch_4"]
    path = write_dir(tmp_path, files) if layout == "dir" else write_archive(tmp_path / "c.tar.gz", files)
    with pytest.raises(CIFAR10NotFoundError) as err:
        read_cifar10(path)
    assert isinstance(err.value, FileNotFoundError) and "data_batch_4" in str(err.value)
    check_message(err, path)


def test_missing_path(tmp_path: Path):
    for path in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(CIFAR10NotFoundError) as err:
            read_cifar10(path)
        check_message(err, path)


def test_metadata_is_optional(tmp_path: Path):
    files = batch_files()
    del files["batches.meta"]
    assert read_cifar10(write_dir(tmp_path, files))[4][0] == "class_0"


BAD_BATCHES = {
    "truncated pickle": (lambda files: files["data_batch_2"][:200], "truncated or corrupt"),
    "not a pickle": (lambda files: b"<html>404</html>", "not a readable CIFAR-10 batch"),
    "not a dict": (lambda files: py2_pickle([1, 2, 3]), "expected a pickled dict"),
    "no labels": (lambda files: py2_pickle({b"data": images(1)}), "keys b'data' and b'labels'"),
    "wrong image size": (lambda files: py2_pickle({b"data": np.zeros((PER_BATCH, 1024), np.uint8),
                                                   b"labels": labels(1)}), r"\(N, 3072\)"),
    "float images": (lambda files: py2_pickle({b"data": np.zeros((PER_BATCH, 3072), np.float32),
                                               b"labels": labels(1)}), "must be uint8"),
    "label count": (lambda files: py2_pickle({b"data": images(1), b"labels": labels(1)[:-1]}),
                    "20 images but labels"),
    "label range": (lambda files: py2_pickle({b"data": images(1), b"labels": [10] * PER_BATCH}),
                    r"labels must be in \[0, 10\)"),
}


@pytest.mark.parametrize("case", BAD_BATCHES)
def test_corrupt_or_malformed_batch_names_the_file(case: str, tmp_path: Path):
    make, expected = BAD_BATCHES[case]
    files = batch_files()
    files["data_batch_2"] = make(files)
    batches = write_dir(tmp_path, files)
    with pytest.raises(CIFAR10Error, match=expected) as err:
        read_cifar10(batches)
    check_message(err, batches / "data_batch_2")


def test_corrupt_archive(tmp_path: Path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + bytes(range(256)) * 4)
    with pytest.raises(CIFAR10Error, match="not a readable CIFAR-10 archive") as err:
        read_cifar10(archive)
    check_message(err, archive)


def malicious_pickle(module: str, name: str, argument: str) -> bytes:
    """A pickle that, loaded by pickle.load, calls module.name(argument)."""
    arg = argument.encode()
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"U" + bytes([len(arg)]) + arg + b"\x85R."


@pytest.mark.parametrize("module, name, code", [
    ("os", "system", "touch {marker}"),
    ("posix", "system", "touch {marker}"),
    ("subprocess", "call", "touch {marker}"),
    ("builtins", "eval", "open({marker!r}, 'w')"),
    ("builtins", "exec", "open({marker!r}, 'w')"),
])
@pytest.mark.parametrize("layout", ["dir", "archive"])
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(module: str, name: str, code: str, layout: str,
                                                               tmp_path: Path):
    marker = tmp_path / "PWNED"
    files = batch_files()
    files["test_batch"] = malicious_pickle(module, name, code.format(marker=str(marker)))
    path = write_dir(tmp_path, files) if layout == "dir" else write_archive(tmp_path / "c.tar.gz", files)
    with pytest.raises(CIFAR10Error, match=f"refused to load the global {module}.{name}") as err:
        read_cifar10(path)
    assert "test_batch" in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()


def test_python3_repickled_batches_are_read(tmp_path: Path):
    # A user who re-saved the batches with Python 3 (protocol 2 writes bytes through _codecs.encode).
    files = {name: pickle.dumps(pickle.loads(data, encoding="bytes"), protocol=2)
             for name, data in batch_files().items()}
    assert b"_codecs" in files["data_batch_1"]
    np.testing.assert_array_equal(read_cifar10(write_dir(tmp_path, files))[2].reshape(PER_BATCH, -1),
                                  images(0))


def md5(file: Path) -> str:
    return hashlib.md5(file.read_bytes()).hexdigest()


def test_download_checks_md5(archive: Path, tmp_path: Path):
    dest = tmp_path / "downloads" / "new"
    got = cifar10.download_cifar10(dest, url=archive.as_uri(), md5=md5(archive))
    assert got == dest / "cifar-10-python.tar.gz" and got.read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-python.tar.gz"]
    assert len(load_cifar10(dest, val_size=10).y_val) == 10
    # Already there with the right checksum: kept, nothing fetched (the URL is not even readable).
    assert cifar10.download_cifar10(dest, url=(tmp_path / "gone").as_uri(), md5=md5(archive)) == got


def test_download_refuses_and_removes_a_corrupt_file(archive: Path, tmp_path: Path):
    dest = tmp_path / "dest"
    with pytest.raises(CIFAR10DownloadError, match="md5 is .*, expected 0123") as err:
        cifar10.download_cifar10(dest, url=archive.as_uri(), md5="0123" + "0" * 28)
    assert isinstance(err.value, ValueError)
    assert list(dest.iterdir()) == []  # neither the archive nor a partial file remains
    with pytest.raises(CIFAR10DownloadError, match="could not download"):
        cifar10.download_cifar10(dest, url=(tmp_path / "missing.tar.gz").as_uri())
    assert list(dest.iterdir()) == []


def test_nos_data_cifar10_command(archive: Path, tmp_path: Path):
    runner = CliRunner()
    dest = tmp_path / "data"
    result = runner.invoke(app, ["data", "cifar10", str(dest), "--url", archive.as_uri(),
                                 "--md5", md5(archive)], terminal_width=300)
    assert result.exit_code == 0, result.output
    target = (dest / "cifar-10-python.tar.gz").resolve()
    assert f"NOS_CIFAR10={target}" in result.output and target.is_file()
    result = runner.invoke(app, ["data", "cifar10", str(tmp_path / "bad"), "--url", archive.as_uri(),
                                 "--md5", "f" * 32], terminal_width=300)
    assert result.exit_code == 1 and "download failed" in result.output and "expected ffff" in result.output
    assert "cifar10" in runner.invoke(app, ["data", "--help"]).output


@pytest.mark.parametrize("under", ["file", "file/below"])
def test_nos_data_cifar10_under_a_file_is_one_line(archive: Path, tmp_path: Path, under: str):
    (tmp_path / "file").write_text("not a folder")
    result = CliRunner().invoke(app, ["data", "cifar10", str(tmp_path / under), "--url", archive.as_uri()],
                                terminal_width=300)
    assert result.exit_code == 1, result.output
    assert f"cannot use {tmp_path / under} as the destination folder" in result.output
    assert len(result.output.strip().splitlines()) == 1 and (tmp_path / "file").read_text() == "not a folder"
