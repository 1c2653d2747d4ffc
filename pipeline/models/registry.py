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


def model_domains(params: Params, manifest: dict) -> list[str]:
    """The prepared domains (letters) the model translates between: every one for a multi-domain model,
    else its A and B: train.pair's (by name) on a multi-domain set, or the set's A and B."""
    if MODELS[params.model].multi_domain:
        return list(manifest["domains"])
    if params.train.pair is None:
        return ["A", "B"]
    letters = {name: letter for letter, name in manifest["domains"].items()}
    return [letters[name] for name in params.train.pair]


def model_pair(params: Params, manifest: dict) -> list[str] | None:
    """What the model file records as `pair`: a two-domain model's two letters, None for a multi-domain model."""
    return None if MODELS[params.model].multi_domain else model_domains(params, manifest)
