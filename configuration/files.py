"""Files and paths every package uses: data files written atomically as strict JSON, and data paths read
from the environment.

    write_atomic(json.dumps(json_safe(rows), indent=2) + "\n", path)   # readers see the old or the new file
    read_bounded(path, 4 * 2**20, "rule record")    # bytes, or a one-line error past the size limit
    path_from_env(config.path, "NOS_CIFAR10")       # the path given, else the variable's value, else None

Here, at the bottom beside the config handling, because records (discovered_rules), run caches and
transfer results (search) and training results (child_tasks) are written alike, and packages of the same
level may not import each other. `path_from_env` is the one reader of the data-path variables
(``NOS_CIFAR10``, ``NOS_NMT_DATA``, ``NOS_CACHE_DIR``), so an empty value means unset everywhere.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(data: str | bytes, path: Path) -> None:
    """Write text (UTF-8) or bytes via a temporary file in the same folder and os.replace: readers see the
    old or the new file, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from other users
        with os.fdopen(fd, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused (ValueError naming the file and the limit) past ``limit`` bytes:
    every file the project reads has a size bound, so a huge or endless one (/dev/zero) costs no memory."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(limit + 1)  # not stat(): a pipe or a device has no size
    except OSError as err:
        raise ValueError(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    if len(data) > limit:
        raise ValueError(f"{path}: the {what} is larger than {limit // 2**20} MiB, the size limit of a "
                         f"{what}")
    return data


def json_safe(value: Any) -> Any:
    """Plain data as strict JSON allows it: non-finite floats become None, tuples lists (recursively)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def path_from_env(given: str | os.PathLike | None, variable: str) -> str | None:
    """``given`` when set, else the environment variable's value; None when neither is (empty is unset)."""
    if given:
        return os.fspath(given)
    return os.environ.get(variable) or None
