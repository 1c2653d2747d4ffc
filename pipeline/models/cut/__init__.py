"""CUT and FastCUT (Park et al. 2020) as the pipeline sees them: the params section, the route (A -> B only:
one generator, no inverse), the builder (model.py holds the training, networks.py the networks and PatchNCE).

`cut.mode` sets the authors' settings (their cut_model.py, modify_commandline_options): CUT = lambda_NCE 1 with
the identity NCE term on Y; FastCUT = lambda_NCE 10, no identity term, flip equivariance. Each of the three
is also a knob of its own; null takes the mode's value, so `-S cut.mode=fastcut` alone is FastCUT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from pipeline.domains import AtoB
from pipeline.knobs import knob
from pipeline.models.names import GAN_MODES, INIT_TYPES, NORMS
from pipeline.models.spec import ModelSpec

if TYPE_CHECKING:
    import torch

    from pipeline.config import Params
    from pipeline.models.cut.model import CUT

MODES: dict[str, dict[str, object]] = {
    "cut": {"lambda_nce": 1.0, "nce_idt": True, "flip_equivariance": False},
    "fastcut": {"lambda_nce": 10.0, "nce_idt": False, "flip_equivariance": True},
}


@dataclass(frozen=True)
class CUTParams:
    """CUT / FastCUT (Park et al. 2020): one generator, a PatchGAN, PatchNCE on G's encoder features."""

    mode: str = knob(choices=tuple(MODES), doc="cut (lambda_NCE 1 + identity NCE) or fastcut (lambda_NCE 10, flip "
                                               "equivariance, no identity NCE), as the authors define them", study=2)
    ngf: int = knob(min=1, max=1024, doc="generator filters in the first conv layer")
    ndf: int = knob(min=1, max=1024, doc="discriminator filters in the first conv layer")
    n_blocks: int = knob(min=1, max=64, doc="residual blocks of G (the authors: 9)")
    norm: str = knob(choices=NORMS, doc="normalisation layers of G and D")
    init_type: str = knob(choices=INIT_TYPES, doc="weight initialisation (the authors' CUT: xavier)")
    init_gain: float = knob(min=0.0, doc="gain of the initialisation")
    gan_mode: str = knob(choices=GAN_MODES, doc="GAN objective (the authors: lsgan)")
    lambda_gan: float = knob(min=0.0, doc="weight of L_GAN (Eq. 5)")
    lambda_nce: Optional[float] = knob(min=0.0, doc="lambda_X of Eq. 5, weight of PatchNCE; null = the mode's (1 / 10)")
    nce_idt: Optional[bool] = knob(doc="the identity term lambda_Y L_PatchNCE(G, H, Y); null = the mode's")
    flip_equivariance: Optional[bool] = knob(doc="flip the input with probability 1/2 and the query features back; "
                                                 "null = the mode's")
    nce_layers: tuple[int, ...] = knob(min=0, doc="indices of G's layers whose outputs PatchNCE compares (the "
                                                  "authors: 0, 4, 8, 12, 16)")
    num_patches: int = knob(min=1, doc="patches sampled per layer and image (the authors: 256)")
    nce_t: float = knob(min=1e-6, doc="temperature tau of Eq. 3 (the authors: 0.07)")
    netf_nc: int = knob(min=1, doc="channels of the projection heads H_l (the authors: 256)")

    # G and D in the vocabulary of the shared rules (rules.check_networks): fixed, not knobs
    @property
    def generator(self) -> str:
        return f"resnet_{self.n_blocks}blocks"  # two stride-2 layers: a crop divisible by 4

    discriminator = "basic"  # the 70x70 PatchGAN, anti-aliased


def setting(section: CUTParams, name: str):
    """A mode-dependent knob: its own value, or the mode's when null."""
    value = getattr(section, name)
    return MODES[section.mode][name] if value is None else value


def build(params: Params, device: torch.device, rank: int = 0) -> CUT:
    from pipeline.models.cut.model import build_cut

    return build_cut(params, device, rank)


def check(params: Params) -> None:
    """nce_layers: ascending indices of the generator's layers (the last one a layer it has)."""
    from pipeline.errors import ConfigError

    c = params.cut
    depth = 4 + 2 * 4 + c.n_blocks + 2 * 4 + 3  # stem, two down blocks, residual blocks, two up blocks, head
    layers = list(c.nce_layers)
    if not layers or layers != sorted(set(layers)) or layers[-1] >= depth:
        raise ConfigError(f"cut.nce_layers={layers}: expected distinct ascending layer indices below {depth} (the "
                          f"generator's layers with cut.n_blocks={c.n_blocks}), e.g. [0, 4, 8, 12, 16]")


SPEC = ModelSpec(
    CUTParams, "CUT / FastCUT (Park et al. 2020): unpaired, one generator, patchwise contrastive loss", build,
    check=check,
    routes={AtoB: ("G",)},  # one way: no inverse network
)
