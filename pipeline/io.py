"""Atomic file and folder writes: a reader never sees a half-written output.

Every stage writes to a temporary sibling and renames it into place (os.replace is atomic on one
file system), so an interrupted stage leaves either the old output or the new one, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_sibling(path: Path, kind: str) -> Path:
    """A fresh temporary file or folder beside `path`, with the permissions a plain write would give it: tempfile
    makes them private (0600, 0700), and an output renamed into place must stay readable as the umask allows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        tmp.chmod(0o777 & ~_umask())
        return tmp
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_umask())
    return Path(name)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    tmp = _tmp_sibling(path, "file")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces the folder `path` whole."""
    path = Path(path)
    tmp = _tmp_sibling(path, "dir")
    try:
        yield tmp
        if path.exists():
            # Two renames: the old folder is moved aside first so `path` is never half old, half new.
            old = _tmp_sibling(path, "dir")
            os.rmdir(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_png(path: str | Path, array: np.ndarray) -> None:
    """Save a uint8 (H, W) or (H, W, 3) array as PNG (inside an atomic folder, no tmp per file)."""
    Image.fromarray(array).save(path, format="PNG", optimize=False)
