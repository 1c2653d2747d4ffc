"""The FCN-score segmenter (paths.evaluator) trained by the evaluator stage on REAL photos, with its
score on the real test photos (the upper bound); or a file that says why there is none."""

from __future__ import annotations

from pathlib import Path

from pipeline import checkpoint
from pipeline.metrics.segmenter import FCN8sMini


def save(path: str | Path, state: dict) -> None:
    checkpoint.save(path, state)


def save_unavailable(path: str | Path, reason: str) -> None:
    checkpoint.save(path, {"available": False, "reason": reason})


def load(path: str | Path) -> tuple[dict, FCN8sMini | None]:
    """(the file's contents, the segmenter in eval mode or None when unavailable)."""
    state = checkpoint.load(path)
    if not state["available"]:
        return state, None
    net = FCN8sMini(state["n_classes"], state["width"])
    net.load_state_dict(state["state_dict"])
    return state, net.eval()
