"""Inception features of the real test images under each FID protocol
(paths.ref_stats/<protocol>-<domain>.pt), computed once by the ref_stats stage and shared by every
experiment; or `<protocol>-unavailable.json` with the reason."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pipeline.errors import StageError
from pipeline.io import write_json


def _unavailable(folder: Path, protocol: str) -> Path:
    return folder / f"{protocol}-unavailable.json"


def save(folder: Path, protocol: str, domain: str, features: torch.Tensor, names: list[str], resolution: int,
         extractor: str, weights_source: str) -> None:
    torch.save({"features": features, "names": names, "resolution": resolution, "extractor": extractor,
                "weights_source": weights_source}, folder / f"{protocol}-{domain}.pt")


def save_unavailable(folder: Path, protocol: str, reason: str) -> None:
    write_json(_unavailable(folder, protocol), {"reason": reason})


def load(folder: str | Path, protocol: str, domain: str) -> dict:
    """The stored features of one domain under one protocol, or {'unavailable': reason}."""
    folder = Path(folder)
    if _unavailable(folder, protocol).exists():
        return {"unavailable": json.loads(_unavailable(folder, protocol).read_text())["reason"]}
    path = folder / f"{protocol}-{domain}.pt"
    if not path.exists():
        raise StageError(f"{path} missing; compute the reference features first: dvc repro ref_stats")
    return torch.load(path, weights_only=True)
