"""The domain classifier (paths.classifier) trained by the classifier stage on REAL images of every
domain, with its accuracy on the real test images (the upper bound of the classification accuracy)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from pipeline import checkpoint
from pipeline.errors import StageError
from pipeline.metrics.domain_classifier import build_classifier

KEYS = ("name", "domains", "resolution", "trained_on", "upper_bound", "upper_bound_by_domain", "upper_bound_n",
        "state_dict")


def save(path: str | Path, net: nn.Module, *, name: str, domains: dict[str, str], resolution: int, trained_on: str,
         upper_bound: float, upper_bound_by_domain: dict[str, float], upper_bound_n: int) -> None:
    checkpoint.save(path, {"name": name, "domains": domains, "resolution": resolution, "trained_on": trained_on,
                           "upper_bound": upper_bound, "upper_bound_by_domain": upper_bound_by_domain,
                           "upper_bound_n": upper_bound_n, "state_dict": net.state_dict()})


def load(path: str | Path) -> tuple[dict, nn.Module]:
    """(the file's contents, the classifier in eval mode)."""
    state = checkpoint.load(path, remake="dvc repro classifier")
    missing = [k for k in KEYS if k not in state]
    if missing:
        raise StageError(f"{path}: a classifier file of another version (no {', '.join(missing)}); re-create it "
                         f"with: dvc repro classifier")
    net = build_classifier(len(state["domains"]))
    net.load_state_dict(state["state_dict"])
    return state, net.eval()
