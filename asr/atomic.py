"""The one way this package replaces a file: write a temporary file beside it, fsync it, rename it
over the target. A reader, or a crash at any moment, then finds the old file or the whole new one,
never a part of it; on any error the temporary file is removed.

Used for everything the service writes for others to read: outputs (CLI, batch, UI downloads),
model manifests, bundles and converted checkpoints.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

#: In the name of every temporary file, so that a sweep can find what a killed process left.
TMP_MARK = ".asr-tmp-"


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write; it becomes ``path`` (fsynced) when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str) -> None:
    """``path`` holds ``data`` (str as UTF-8), all of it or, after an error, what it held before."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)
