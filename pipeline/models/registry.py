"""The models the pipeline trains (params `model`), as a plain dict: name -> builder from params."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from pipeline.models.base import GANModel
from pipeline.models.bicyclegan import build_bicyclegan
from pipeline.models.cyclegan import build_cyclegan
from pipeline.models.pix2pix import build_pix2pix
from pipeline.models.stargan import build_stargan

if TYPE_CHECKING:
    from pipeline.config import Params


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[Params, torch.device, int], GANModel]  # (params, device, rank)
    paired: bool  # trained on aligned (A, B) pairs
    knobs: tuple[str, ...] = ()  # the top-level params (params.yaml's ablation knobs) the model reads
    multi_domain: bool = False  # one model for k >= 2 domains (trained on every prepared domain)


MODELS: dict[str, ModelEntry] = {
    "cyclegan": ModelEntry(build_cyclegan, paired=False,      # Zhu et al. 2017
                           knobs=("lambda_cycle", "lambda_identity", "pool_size")),
    "pix2pix": ModelEntry(build_pix2pix, paired=True),        # Isola et al. 2017, the paired baseline
    "bicyclegan": ModelEntry(build_bicyclegan, paired=True),  # Zhu et al. 2017b, multimodal
    "stargan": ModelEntry(build_stargan, paired=False, multi_domain=True),  # Choi et al. 2018, k domains
}
