"""pix2pix (Isola et al. 2017), the paired baseline, as the pipeline sees it: its params section, its route
and capabilities, its builder (model.py holds the networks' training)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.domains import AtoB
from pipeline.knobs import knob
from pipeline.models.spec import ModelSpec, NetParams

if TYPE_CHECKING:
    import torch

    from pipeline.config import Params
    from pipeline.models.pix2pix.model import Pix2Pix


@dataclass(frozen=True)
class Pix2PixParams(NetParams):
    """pix2pix (Isola et al. 2017): the paired baseline, conditional GAN + L1."""

    lambda_l1: float = knob(min=0.0, doc="lambda of Eq. 4, weight of the L1 to the ground truth (paper: 100)")


def build(params: Params, device: torch.device, rank: int = 0) -> Pix2Pix:
    from pipeline.models.pix2pix.model import build_pix2pix

    return build_pix2pix(params, device, rank)


SPEC = ModelSpec(
    Pix2PixParams, "pix2pix (Isola et al. 2017): the paired baseline, conditional GAN + L1", build, paired=True,
    # Sec. 3.3: "At inference time, we run the generator net in exactly the same manner as during the training
    # phase ... we apply dropout at test time, and we apply batch normalization using the statistics of the test
    # batch"; the authors' test.py does so, one image per batch, unless --eval.
    test_mode="train",
    routes={AtoB: ("G",)},
)
