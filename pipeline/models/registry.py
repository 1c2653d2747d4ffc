"""The models the pipeline trains (params `model`), as a plain dict: name -> builder from params."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from pipeline.models.base import GANModel
from pipeline.models.bicyclegan import build_bicyclegan
from pipeline.models.cyclegan import build_cyclegan
from pipeline.models.pix2pix import build_pix2pix

if TYPE_CHECKING:
    from pipeline.config import Params


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[[Params, torch.device, int], GANModel]  # (params, device, rank)
    paired: bool  # trained on aligned (A, B) pairs
    knobs: tuple[str, ...] = ()  # the top-level params (params.yaml's ablation knobs) the model reads
    # the generator's mode at test time under its paper's protocol (translate.generator_mode "paper"):
    # "train" = dropout on and batch-norm statistics of the test batch, one image per batch
    test_mode: str = "eval"


MODELS: dict[str, ModelEntry] = {
    "cyclegan": ModelEntry(build_cyclegan, paired=False,      # Zhu et al. 2017
                           knobs=("lambda_cycle", "lambda_identity", "pool_size")),
    # Isola et al. 2017, the paired baseline. Sec. 3.3: "At inference time, we run the generator net in exactly
    # the same manner as during the training phase ... apply dropout at test time, and ... batch normalization
    # using the statistics of the test batch"; the authors' test.py does so (batch 1) unless --eval.
    "pix2pix": ModelEntry(build_pix2pix, paired=True, test_mode="train"),
    "bicyclegan": ModelEntry(build_bicyclegan, paired=True),  # Zhu et al. 2017b, multimodal (their test.py: model.eval())
}

GENERATOR_MODES = ("paper", "eval")  # params translate.generator_mode


def test_mode(model: str, setting: str) -> str:
    """"train" or "eval": the mode a model's generators translate in under translate.generator_mode
    `setting` ("paper": as its paper prescribes; "eval": eval mode, running statistics, no dropout)."""
    if setting not in GENERATOR_MODES:
        raise ValueError(f"generator mode {setting!r}; valid: {', '.join(GENERATOR_MODES)}")
    return MODELS[model].test_mode if setting == "paper" else "eval"
