"""What a model declares to the pipeline, in its package's __init__.py (pipeline/models/<name>/): its params
section, its rules, its builder, its routes and its capabilities; and the network section that the
CycleGAN-family models share. torch-free: a builder imports its model (pipeline/models/<name>/model.py)
when called, so loading params.yaml imports no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from pipeline.domains import Route
from pipeline.knobs import knob
from pipeline.models.names import DISCRIMINATORS, GAN_MODES, GENERATORS, INIT_TYPES, NORMS

if TYPE_CHECKING:
    import torch

    from pipeline.config import Params
    from pipeline.models.base import GANModel

# A two-domain model's routes: route -> the generators applied in order to its source's test images
Routes = dict[Route, tuple[str, ...]]


def no_rules(params: Params) -> None:
    """A model whose section needs nothing of the other params."""


def never(params: Params) -> bool:
    return False


@dataclass(frozen=True)
class ModelSpec:
    section: type                                   # its params section: a dataclass of knobs, params.<name>
    doc: str                                        # one line: the model and its paper
    build: Callable[[Params, torch.device, int], GANModel]  # (params, device, rank) -> the model, on the device
    check: Callable[[Params], None] = no_rules      # its rules across params: ConfigError naming the key and the fix
    paired: bool = False                            # trained on aligned (A, B) pairs
    multi_domain: bool = False                      # one model for the k >= 2 prepared domains
    conditional: bool = False                       # G(x, c): into the domain of a one-hot target label c
    multimodal: bool = False                        # G(x, z): a latent code z, n_samples outputs per input
    full_batch: Callable[[Params], bool] = never    # every training batch must be full (a split batch)
    test_mode: str = "eval"                         # its generators at test time under its paper: eval or train
    knobs: tuple[str, ...] = ()                     # the top-level params (params.yaml's ablation knobs) it reads
    routes: Routes = field(default_factory=dict)    # a two-domain model's routes (a multi-domain one: every pair)

    @property
    def directions(self) -> dict[Route, str]:
        """{direction: the generator that translates it}: the routes of one generator."""
        return {r: chain[0] for r, chain in self.routes.items() if len(chain) == 1}


@dataclass(frozen=True)
class NetParams:
    """Networks and GAN objective shared by the CycleGAN-family models (pipeline/models/networks.py)."""

    generator: str = knob(choices=GENERATORS, doc="G's architecture: a ResNet (blocks) or a U-Net (levels)")
    discriminator: str = knob(choices=DISCRIMINATORS, doc="D: basic = 70x70 PatchGAN, n_layers, pixel = 1x1, "
                                                          "basic_multi = the 70x70 PatchGAN at two scales")
    n_layers_d: int = knob(min=1, max=8, doc="only for discriminator: n_layers")
    ngf: int = knob(min=1, max=1024, doc="generator filters in the first conv layer")
    ndf: int = knob(min=1, max=1024, doc="discriminator filters in the first conv layer")
    norm: str = knob(choices=NORMS, doc="normalisation layers of G and D")
    dropout: bool = knob(doc="dropout (0.5) in G's middle layers (pix2pix's noise)")
    init_type: str = knob(choices=INIT_TYPES, doc="weight initialisation; default = PyTorch's own")
    init_gain: float = knob(min=0.0, doc="std (normal) or gain (xavier, orthogonal) of the initialisation")
    gan_mode: str = knob(choices=GAN_MODES, doc="GAN objective: lsgan (CycleGAN), vanilla (pix2pix), wgangp")
    lambda_gp: float = knob(min=0.0, doc="gradient-penalty weight, used when gan_mode is wgangp")
