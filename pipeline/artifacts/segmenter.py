"""The FCN-score segmenter (paths.segmenter) trained by the segmenter stage on REAL photos, with its
score on the real test photos (the upper bound); or a file that says why there is none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pipeline import checkpoint
from pipeline.errors import StageError
from pipeline.metrics.segmenter import NAME, FCN8sMini

KEYS = ("name", "n_classes", "width", "classes", "ignore_label", "resolution", "trained_on", "upper_bound",
        "upper_bound_n", "confusion_real", "state_dict")


def save(path: str | Path, net: FCN8sMini, *, width: int, classes: list[str], ignore_label: int, resolution: int,
         trained_on: str, upper_bound: dict[str, float], upper_bound_n: int, confusion_real: np.ndarray,
         upper_bound_by_domain: dict[str, tuple[dict[str, float], int]]) -> None:
    """The segmenter and its score on real test photos: the upper bound of every FCN-score, pooled over the
    photo domains and per domain ({letter: (scores, n)})."""
    checkpoint.save(path, {
        "available": True, "name": NAME, "n_classes": len(classes), "width": width, "classes": classes,
        "ignore_label": ignore_label, "resolution": resolution, "trained_on": trained_on,
        "upper_bound": upper_bound, "upper_bound_n": upper_bound_n, "confusion_real": torch.from_numpy(confusion_real),
        "upper_bound_by_domain": upper_bound_by_domain,
        "state_dict": net.state_dict()})


def save_unavailable(path: str | Path, reason: str) -> None:
    checkpoint.save(path, {"available": False, "reason": reason})


def load(path: str | Path) -> tuple[dict, FCN8sMini | None]:
    """(the file's contents, the segmenter in eval mode or None when unavailable)."""
    state = checkpoint.load(path, remake="dvc repro segmenter")
    missing = [k for k in ("available", *(KEYS if state.get("available") else ("reason",))) if k not in state]
    if missing:
        raise StageError(f"{path}: a segmenter file of another version (no {', '.join(missing)}); re-create it "
                         f"with: dvc repro segmenter")
    if not state["available"]:
        return state, None
    net = FCN8sMini(state["n_classes"], state["width"])
    net.load_state_dict(state["state_dict"])
    return state, net.eval()
