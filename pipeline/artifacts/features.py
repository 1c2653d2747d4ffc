"""Inception features of the real test images (paths.ref_stats/<domain>.pt), computed once by the
ref_stats stage and shared by every experiment; or `unavailable.json` with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipeline.io import write_json

UNAVAILABLE = "unavailable.json"


def save(folder: Path, domain: str, features: torch.Tensor, names: list[str], resolution: int, extractor: str,
         weights_source: str) -> None:
    torch.save({"features": features, "names": names, "resolution": resolution, "extractor": extractor,
                "weights_source": weights_source}, folder / f"{domain}.pt")


def save_unavailable(folder: Path, reason: str) -> None:
    write_json(folder / UNAVAILABLE, {"reason": reason})


def load(folder: str | Path, domain: str) -> dict:
    """The stored features of one domain, or {'unavailable': reason}."""
    folder = Path(folder)
    if (folder / UNAVAILABLE).exists():
        return {"unavailable": json.loads((folder / UNAVAILABLE).read_text())["reason"]}
    return torch.load(folder / f"{domain}.pt", weights_only=True)
