"""CIFAR-10 from the files as distributed, read safely, and their download.

Where the data is: `load_cifar10(path)` takes, or when `path` is None reads from the environment
variable `NOS_CIFAR10`, any of

- the `cifar-10-batches-py` directory (data_batch_1 .. data_batch_5, test_batch, batches.meta),
- a directory that contains `cifar-10-batches-py/` or `cifar-10-python.tar.gz`,
- the archive `cifar-10-python.tar.gz` itself (its members are read directly, nothing is extracted).

Nothing is downloaded at run time. On a machine with a network, `nos data cifar10 DEST` (or
`download_cifar10(DEST)`) fetches the archive from the official URL below, checks its md5 and prints
the `NOS_CIFAR10` setting to use.

Safety: the batches are Python pickles, and files a user supplies are never executed. They are read
with `SafeUnpickler`, which resolves only the globals the real files contain (numpy's array and dtype
reconstruction) and refuses any other (os.system, eval, ...) before it can be called. The original
files were pickled by Python 2, so they are read with encoding="bytes": keys are bytes (b"data",
b"labels") and so are the strings inside.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from child_tasks.image_data import ImageData, normalise_splits
from configuration.files import path_from_env

__all__ = ["CIFAR10_URL", "CIFAR10_MD5", "ENV_VAR", "ARCHIVE_NAME", "BATCHES_DIR", "CIFAR10Error",
           "CIFAR10NotFoundError", "CIFAR10DownloadError", "SafeUnpickler", "read_cifar10", "load_cifar10",
           "download_cifar10"]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
ENV_VAR = "NOS_CIFAR10"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
IMAGE_SHAPE = (3, 32, 32)
NUM_CLASSES = 10

HOW_TO_GET = (f"Get CIFAR-10 with `nos data cifar10 DEST` on a machine with a network, or download "
              f"{CIFAR10_URL} (md5 {CIFAR10_MD5}); then pass its path or set {ENV_VAR}=PATH "
              f"(the archive, the directory holding it, or the extracted {BATCHES_DIR} directory).")


class CIFAR10Error(ValueError):
    """The CIFAR-10 files are unreadable, corrupt or unsafe; the message names the file."""


class CIFAR10NotFoundError(CIFAR10Error, FileNotFoundError):
    """No CIFAR-10 data where it was looked for (also a FileNotFoundError)."""


class CIFAR10DownloadError(CIFAR10Error):
    """The download failed or its checksum does not match; nothing is left behind."""


def _reconstruct() -> Any:
    # numpy 2 moved numpy.core to numpy._core and warns on the old name, which the original files use:
    # resolve the function itself rather than importing the module the file names.
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for the CIFAR-10 batches: only the globals that the real files (and re-pickled
    copies of them) contain are resolved; any other global is refused, so nothing else can be called."""

    ALLOWED: dict[tuple[str, str], Any] = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        # Python 3 writes bytes as _codecs.encode(text, "latin1") in protocols 0-2; it only converts text.
        ("_codecs", "encode"): lambda: codecs.encode,
    }

    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        resolve = self.ALLOWED.get((module, name))
        if resolve is None:
            raise CIFAR10Error(f"{self.source}: refused to load the global {module}.{name}: a CIFAR-10 "
                               "batch holds only numpy arrays, lists and strings, so this file is not one "
                               f"(and was not executed). {HOW_TO_GET}")
        return resolve()


def _unpickle(data: bytes, source: str) -> dict:
    try:
        obj = SafeUnpickler(io.BytesIO(data), source).load()
    except CIFAR10Error:
        raise
    except Exception as err:  # any malformed pickle: truncated, wrong opcodes, bad numpy state
        raise CIFAR10Error(f"{source}: not a readable CIFAR-10 batch ({type(err).__name__}: {err}). "
                           f"The file may be truncated or corrupt. {HOW_TO_GET}") from None
    if not isinstance(obj, dict):
        raise CIFAR10Error(f"{source}: expected a pickled dict, found {type(obj).__name__}. {HOW_TO_GET}")
    return obj


def _batch(obj: dict, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 3, 32, 32), labels int64 (N,)) from one unpickled batch, validated."""
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise CIFAR10Error(f"{source}: a CIFAR-10 batch has keys b'data' and b'labels', found "
                           f"{sorted(map(repr, obj))}. {HOW_TO_GET}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != int(np.prod(IMAGE_SHAPE)):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CIFAR10Error(f"{source}: b'data' must be uint8 of shape (N, 3072), found {found}. "
                           f"{HOW_TO_GET}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise CIFAR10Error(f"{source}: b'labels' must be a list of integers. {HOW_TO_GET}") from None
    if labels.shape != (data.shape[0],):
        raise CIFAR10Error(f"{source}: {data.shape[0]} images but labels of shape {labels.shape}. "
                           f"{HOW_TO_GET}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise CIFAR10Error(f"{source}: labels must be in [0, {NUM_CLASSES}), found "
                           f"{labels.min()}..{labels.max()}. {HOW_TO_GET}")
    return data.reshape(-1, *IMAGE_SHAPE), labels


def resolve_path(path: str | os.PathLike | None = None, variable: str = ENV_VAR) -> Path:
    """The CIFAR-10 location to read: `path`, else the environment's ``variable`` ($NOS_CIFAR10); a
    directory holding the archive or the batches directory resolves to it. Raises CIFAR10NotFoundError
    naming what was looked for."""
    found = path_from_env(path, variable)
    if found is None:
        raise CIFAR10NotFoundError(f"no CIFAR-10 path given and {variable} is not set. {HOW_TO_GET}")
    where = Path(found).expanduser()
    if where.is_file():
        return where
    if where.is_dir():
        for candidate in (where, where / BATCHES_DIR):
            if (candidate / TRAIN_BATCHES[0]).is_file():
                return candidate
        if (where / ARCHIVE_NAME).is_file():
            return where / ARCHIVE_NAME
        raise CIFAR10NotFoundError(f"{where}: no CIFAR-10 here (looked for {TRAIN_BATCHES[0]}, "
                                   f"{BATCHES_DIR}/ and {ARCHIVE_NAME}). {HOW_TO_GET}")
    raise CIFAR10NotFoundError(f"{where}: no such file or directory. {HOW_TO_GET}")


def _read_members(where: Path, names: tuple[str, ...]) -> dict[str, tuple[bytes, str]]:
    """{name: (file bytes, a description naming its path)} from a batches directory or the archive."""
    found: dict[str, tuple[bytes, str]] = {}
    if where.is_dir():
        for name in names:
            file = where / name
            if not file.is_file():
                raise CIFAR10NotFoundError(f"{file}: missing CIFAR-10 file. {HOW_TO_GET}")
            found[name] = (file.read_bytes(), str(file))
        return found
    try:
        with tarfile.open(where, "r:*") as archive:
            members = {Path(m.name).name: m for m in archive.getmembers()
                       if m.isfile() and Path(m.name).parent.name == BATCHES_DIR}
            for name in names:
                if name not in members:
                    raise CIFAR10NotFoundError(f"{where}: the archive has no {BATCHES_DIR}/{name}. "
                                               f"{HOW_TO_GET}")
                member = archive.extractfile(members[name])
                assert member is not None  # isfile() members always have a file object
                found[name] = (member.read(), f"{where}:{members[name].name}")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        if isinstance(err, CIFAR10NotFoundError):
            raise
        raise CIFAR10Error(f"{where}: not a readable CIFAR-10 archive ({type(err).__name__}: {err}). "
                           f"{HOW_TO_GET}") from None
    return found


def read_cifar10(path: str | os.PathLike | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The raw CIFAR-10: (x_train uint8 (N, 3, 32, 32), y_train int64, x_test, y_test, label names),
    the training batches concatenated in order 1..5. `path` as in `resolve_path`."""
    where = resolve_path(path)
    files = _read_members(where, (*TRAIN_BATCHES, TEST_BATCH))
    train = [_batch(_unpickle(*files[name]), files[name][1]) for name in TRAIN_BATCHES]
    x_test, y_test = _batch(_unpickle(*files[TEST_BATCH]), files[TEST_BATCH][1])
    label_names = [f"class_{i}" for i in range(NUM_CLASSES)]
    try:  # batches.meta only names the classes: its absence is no reason to refuse the data
        meta_bytes, meta_source = _read_members(where, ("batches.meta",))["batches.meta"]
    except CIFAR10NotFoundError:
        pass
    else:
        names = _unpickle(meta_bytes, meta_source).get(b"label_names")
        if isinstance(names, list) and len(names) == NUM_CLASSES:
            label_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]),
            x_test, y_test, label_names)


def load_cifar10(path: str | os.PathLike | None = None, val_size: int = 5000, seed: int = 0,
                 augment: bool = False, variable: str = ENV_VAR) -> ImageData:
    """CIFAR-10 as an `ImageData`: `val_size` images of the training batches (a stratified draw fixed by
    `seed`) become the validation split (the search's reward), the rest train; the official test batch is
    the test split (for reporting). Normalised per channel with the train split's statistics; `augment`
    asks training for crop+flip. Cached per arguments and file versions; the tensors are shared, so
    never modify them in place. Path: as in `resolve_path` (None reads the environment's ``variable``)."""
    where = resolve_path(path, variable).resolve()
    stat = where.stat() if where.is_file() else (where / TRAIN_BATCHES[0]).stat()
    return _load_cifar10(str(where), (stat.st_mtime_ns, stat.st_size), int(val_size), int(seed),
                         bool(augment))


@functools.lru_cache(maxsize=2)  # a CIFAR-10 ImageData is ~700 MB: keep few
def _load_cifar10(where: str, _version: tuple[int, int], val_size: int, seed: int, augment: bool
                  ) -> ImageData:
    x_train, y_train, x_test, y_test, _ = read_cifar10(where)
    if not 0 < val_size < len(y_train):
        raise ValueError(f"val_size must be in [1, {len(y_train) - 1}] for {where} "
                         f"({len(y_train)} training images), got {val_size}")
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y_train, minlength=NUM_CLASSES)
    # Stratify when every class can give one image to each side; tiny test archives may not allow it.
    stratify = y_train if counts.min() >= 2 and NUM_CLASSES <= val_size <= len(y_train) - NUM_CLASSES \
        else None
    train_idx, val_idx = train_test_split(np.arange(len(y_train)), test_size=val_size, stratify=stratify,
                                          random_state=seed)
    train_idx.sort()  # keep the files' order within each split: the split, not its order, is the draw
    val_idx.sort()
    return normalise_splits("cifar10", {"train": (x_train[train_idx], y_train[train_idx]),
                                        "val": (x_train[val_idx], y_train[val_idx]),
                                        "test": (x_test, y_test)}, num_classes=NUM_CLASSES, augment=augment)


def _md5(file: Path) -> str:
    digest = hashlib.md5()
    with file.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_cifar10(dest: str | os.PathLike, *, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Download the CIFAR-10 archive into the directory `dest` as cifar-10-python.tar.gz, with a progress
    bar, and check its md5; returns the archive's path. An archive already there with the right md5 is
    kept. A failed or corrupt download raises CIFAR10DownloadError and leaves no file behind."""
    from rich.console import Console
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    dest = Path(dest).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # dest, or a folder above it, is a file; no permission; a read-only disk
        raise CIFAR10DownloadError(f"cannot use {dest} as the destination folder: {err.strerror or err}"
                                   + (" (it is a file)" if dest.is_file() else "")) from None
    target = dest / ARCHIVE_NAME
    if target.is_file() and _md5(target) == md5:
        return target
    partial = target.with_name(target.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            size = response.headers.get("Content-Length")
            with Progress(TextColumn("CIFAR-10"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                          TimeRemainingColumn(), console=Console(stderr=True), transient=True) as progress:
                task = progress.add_task("download", total=int(size) if size else None)
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    digest.update(block)
                    progress.update(task, advance=len(block))
    except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors; a bad URL a ValueError
        partial.unlink(missing_ok=True)
        raise CIFAR10DownloadError(f"could not download {url} to {target}: {err}") from None
    except BaseException:  # interrupted (Ctrl-C): leave no half-written file behind either
        partial.unlink(missing_ok=True)
        raise
    if digest.hexdigest() != md5:
        partial.unlink(missing_ok=True)
        raise CIFAR10DownloadError(f"{url}: the download's md5 is {digest.hexdigest()}, expected {md5}; "
                                   f"the corrupt file was removed, nothing was written to {target}")
    partial.replace(target)
    return target
