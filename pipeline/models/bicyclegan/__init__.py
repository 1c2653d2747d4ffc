"""BicycleGAN (Zhu et al. 2017b, "Toward Multimodal Image-to-Image Translation") as the pipeline sees it: its
params section, its rules, its route and capabilities, its builder (model.py holds the networks' training)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.domains import AtoB
from pipeline.errors import ConfigError
from pipeline.knobs import knob
from pipeline.models.names import ENCODERS, LATENT_GENERATORS, WHERE_ADD
from pipeline.models.spec import ModelSpec, NetParams

if TYPE_CHECKING:
    import torch

    from pipeline.config import Params
    from pipeline.models.bicyclegan.model import BicycleGAN

VARIANTS = ("bicyclegan", "pix2pix_noise")


@dataclass(frozen=True)
class BicycleGANParams(NetParams):
    """BicycleGAN (Zhu et al. 2017b): G(A, z) + encoder E(B) -> z, cVAE-GAN + cLR-GAN (Eq. 7)."""

    generator: str = knob(choices=LATENT_GENERATORS, doc="U-Net taking z (paper: unet_256 at 256px)")
    variant: str = knob(choices=VARIANTS, doc="pix2pix_noise = the paper's baseline", study=2)
    nz: int = knob(min=1, max=1024, doc="latent code length (paper: 8)")
    where_add: str = knob(choices=WHERE_ADD, doc="z concatenated to G's input only, or to every encoder level")
    encoder: str = knob(choices=ENCODERS, doc="E's architecture: a ResNet for 64, 128 or 256px images")
    nef: int = knob(min=1, max=1024, doc="encoder filters in the first conv layer (paper: 64)")
    lambda_l1: float = knob(min=0.0, doc="lambda of the image L1 of the cVAE-GAN cycle (paper: 10)")
    lambda_kl: float = knob(min=0.0, doc="lambda_KL (paper: 0.01)")
    lambda_z: float = knob(min=0.0, doc="lambda_latent, L1 between z and E(G(A, z)) (paper: 0.5)")
    lambda_gan: float = knob(min=0.0, doc="weight of D's adversarial term (cVAE-GAN)")
    lambda_gan2: float = knob(min=0.0, doc="weight of D2's adversarial term (cLR-GAN)")
    batch_split: bool = knob(doc="the authors': the first half of a batch feeds the cVAE-GAN cycle, the second half "
                                 "gives D2 its real images (train.batch_size even); false = both cycles on the whole batch")


def splits_batch(params: Params) -> bool:
    """Each batch is split between the two cycles: a short one leaves the cVAE-GAN half empty."""
    b = params.bicyclegan
    return b.variant == "bicyclegan" and b.batch_split


def check(params: Params) -> None:
    if splits_batch(params) and params.train.batch_size % 2:
        raise ConfigError(f"bicyclegan.batch_split=true splits each batch between the two cycles, so "
                          f"train.batch_size must be even, got {params.train.batch_size}; set train.batch_size=2 "
                          f"(the authors' BicycleGAN default) or bicyclegan.batch_split=false")


def build(params: Params, device: torch.device, rank: int = 0) -> BicycleGAN:
    from pipeline.models.bicyclegan.model import build_bicyclegan

    return build_bicyclegan(params, device, rank)


SPEC = ModelSpec(
    BicycleGANParams, "BicycleGAN (Zhu et al. 2017b): multimodal paired translation, G(A, z) and E(B) -> z", build,
    check=check, paired=True, multimodal=True, full_batch=splits_batch,
    routes={AtoB: ("G",)},  # one random sample per input (samples/00)
)
