"""Checkpoints: atomic writes, a previous copy to fall back on, and loading with weights_only=True
(only tensors and plain Python data are stored, so no pickle code runs when a file is read).

Resume state lives in <checkpoints>/latest.pt; the one before it is kept as previous.pt. A write goes
to a temporary file first; latest.pt is only ever replaced by a complete file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from pipeline.errors import StageError
from pipeline.io import atomic_file

log = logging.getLogger("pipeline")
FORMAT = 1


def write(tmp: Path, state: dict) -> None:
    """torch.save through a file object: given a path, torch names the archive's records after the
    file, and a temporary file's random name would make equal checkpoints differ byte for byte."""
    with open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)


def save(path: str | Path, state: dict) -> None:
    with atomic_file(path) as tmp:
        write(tmp, state)


def load(path: str | Path, map_location: str | torch.device = "cpu", remake: str = "dvc repro train") -> dict:
    """A checkpoint file of this pipeline; missing, unreadable or foreign files are one StageError that
    names the file and `remake`, the command that writes it."""
    if not Path(path).exists():
        raise StageError(f"{path} missing; create it with: {remake}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or corrupt file: torch raises several types
        raise StageError(f"{path} is unreadable ({type(e).__name__}: {str(e)[:200]}); re-create it with: {remake}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise StageError(f"{path}: not a checkpoint of this pipeline's format {FORMAT} (written by another version or "
                         f"program); re-create it with: {remake}")
    return state


def save_resume_state(folder: str | Path, state: dict) -> None:
    """latest.pt <- state, keeping the former latest as previous.pt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    latest, previous = folder / "latest.pt", folder / "previous.pt"
    with atomic_file(latest) as tmp:
        write(tmp, state)
        if latest.exists():
            os.replace(latest, previous)
    # (a crash between the two renames leaves previous.pt only, which load_resume_state falls back to)


def load_resume_state(folder: str | Path, map_location: str | torch.device = "cpu") -> dict | None:
    """The newest readable resume state, or None. A corrupt latest.pt falls back to previous.pt.
    Temporary files of a write that was killed (SIGKILL skips every cleanup) are removed first."""
    for stale in Path(folder).glob(".latest.pt.*.tmp"):
        log.info("removing %s, left by an interrupted checkpoint write", stale)
        stale.unlink(missing_ok=True)
    for name in ("latest.pt", "previous.pt"):
        path = Path(folder) / name
        if not path.exists():
            if name == "latest.pt" and (Path(folder) / "previous.pt").exists():
                log.warning("%s is missing (a checkpoint write was interrupted); trying previous.pt", path)
            continue
        try:
            return load(path, map_location)
        except Exception as e:  # truncated or corrupt file: torch raises several types
            log.warning("checkpoint %s is unreadable (%s: %s); trying the previous one", path, type(e).__name__, e)
    return None
