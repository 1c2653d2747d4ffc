"""StarGAN (Choi et al. 2018) as the pipeline sees it: its params section, its rules and capabilities (one
G(x, c) for every ordered pair of the k prepared domains), its builder (model.py holds the networks'
training, networks.py its G and D)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.knobs import knob
from pipeline.models.names import CLASSIFYING_DISCRIMINATORS, CONDITIONAL_GENERATORS, INIT_TYPES
from pipeline.models.spec import ModelSpec

if TYPE_CHECKING:
    import torch

    from pipeline.config import Params
    from pipeline.models.stargan.model import StarGAN


@dataclass(frozen=True)
class StarGANParams:
    """StarGAN (Choi et al. 2018): one G(x, c) for k domains, D with a domain classifier, WGAN-GP (Eq. 8).
    Its own Adam settings: the paper's differ from CycleGAN's (train.lr does not apply)."""

    generator: str = knob(choices=CONDITIONAL_GENERATORS, doc="G(x, c): 7x7 conv, 2 down, 6 residual blocks, 2 up")
    discriminator: str = knob(choices=CLASSIFYING_DISCRIMINATORS, doc="D: a PatchGAN real/fake head and a domain head")
    n_layers_d: int = knob(min=1, max=8, doc="stride-2 convs of D (authors: 6 at 128px); the crop side must be "
                                              "divisible by 2**n_layers_d")
    ngf: int = knob(min=1, max=1024, doc="generator filters in the first conv layer (paper: 64)")
    ndf: int = knob(min=1, max=1024, doc="discriminator filters in the first conv layer (paper: 64)")
    init_type: str = knob(choices=INIT_TYPES, doc="default = PyTorch's initialisation, as the authors' code")
    init_gain: float = knob(min=0.0, doc="std or gain of the initialisation (unused by init_type default)")
    lambda_cls: float = knob(min=0.0, doc="lambda_cls of Eq. 6, domain classification (paper: 1)")
    lambda_rec: float = knob(min=0.0, doc="lambda_rec of Eq. 6, reconstruction L1 (paper: 10)")
    lambda_gp: float = knob(min=0.0, doc="lambda_gp of Eq. 8, WGAN-GP gradient penalty (paper: 10)")
    n_critic: int = knob(min=1, max=100, doc="D updates per G update (paper: 5)")
    g_lr: float = knob(min=0.0, doc="Adam lr of G (paper: 1e-4)")
    d_lr: float = knob(min=0.0, doc="Adam lr of D (paper: 1e-4)")
    beta1: float = knob(min=0.0, max=1.0, doc="Adam beta1 (paper: 0.5)")
    beta2: float = knob(min=0.0, max=1.0, doc="Adam beta2 (paper: 0.999)")


def check(params: Params) -> None:
    n_layers = params.stargan.n_layers_d
    if params.train.crop_size % 2 ** n_layers:
        raise ConfigError(f"stargan.n_layers_d={n_layers} halves the image that many times: "
                          f"train.crop_size must be divisible by {2 ** n_layers}, got "
                          f"{params.train.crop_size}; lower stargan.n_layers_d")


def build(params: Params, device: torch.device, rank: int = 0) -> StarGAN:
    from pipeline.models.stargan.model import build_stargan

    return build_stargan(params, device, rank)


SPEC = ModelSpec(
    StarGANParams, "StarGAN (Choi et al. 2018): one generator G(x, c) for k domains", build, check=check,
    multi_domain=True, conditional=True,
)
