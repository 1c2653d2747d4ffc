"""What the translate stage hands the evaluation, beside the images (paths.translated):

    info.json    model, size, counts, routes (output folder -> input folder and generators), the model's
                 training fingerprint (which finds its MLflow run),
                 and for a multimodal model its sampling (folder, n_samples, nz, seed)
    latent.pt    (BicycleGAN with an encoder) the random codes z of every sample and the encoder's
                 means E(G(A, z)) recovered from the outputs, (n_samples, N, nz) each
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.errors import StageError
from pipeline.io import write_json

if TYPE_CHECKING:  # torch only where a latent file is read or written: the record stage reads info.json alone
    import torch

INFO = "info.json"
LATENT = "latent.pt"


def write_info(folder: Path, info: dict) -> None:
    write_json(folder / INFO, info)


def read_info(folder: str | Path) -> dict:
    path = Path(folder) / INFO
    if not path.exists():
        raise StageError(f"{path} missing; run the translate stage first (dvc repro translate)")
    return json.loads(path.read_text())


def write_latent(folder: Path, codes: torch.Tensor, recovered: torch.Tensor) -> None:
    import torch

    torch.save({"codes": codes, "recovered": recovered}, folder / LATENT)


def read_latent(folder: str | Path) -> dict[str, torch.Tensor] | None:
    """{'codes', 'recovered'}, or None when the model has no encoder."""
    import torch

    path = Path(folder) / LATENT
    return torch.load(path, weights_only=True) if path.exists() else None
