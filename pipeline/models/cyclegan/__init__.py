"""CycleGAN (Zhu et al. 2017) as the pipeline sees it: its params section, its routes and capabilities, its
builder (model.py holds the networks' training). Its loss weights are params.yaml's top-level ablation knobs
(lambda_cycle, lambda_identity, pool_size), so that `dvc exp run -S lambda_cycle=5` works."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.domains import AtoB, BtoA
from pipeline.knobs import knob
from pipeline.models.spec import ModelSpec, NetParams

if TYPE_CHECKING:
    import torch

    from pipeline.config import Params
    from pipeline.models.cyclegan.model import CycleGAN

# The paper's loss weights: lambda = 10 (Sec. 4), identity 0.5 x lambda (Sec. 5.2, the authors' code), a
# history of 50 generated images for D (Sec. 4). The studies and the benchmark pin them from here.
PAPER: dict[str, object] = {"lambda_cycle": 10.0, "lambda_identity": 0.5, "pool_size": 50}


@dataclass(frozen=True)
class CycleGANParams(NetParams):
    """CycleGAN (Zhu et al. 2017). Its loss weights are the top-level ablation knobs."""

    adversarial: bool = knob(doc="false = 'cycle alone' ablation: no GAN term, D unused", view=6, study=9)
    cycle_forward: bool = knob(doc="A -> B -> A term, ||F(G(x)) - x||", view=7, study=10)
    cycle_backward: bool = knob(doc="B -> A -> B term, ||G(F(y)) - y||", view=8, study=11)


def build(params: Params, device: torch.device, rank: int = 0) -> CycleGAN:
    from pipeline.models.cyclegan.model import build_cyclegan

    return build_cyclegan(params, device, rank)


SPEC = ModelSpec(
    CycleGANParams, "CycleGAN (Zhu et al. 2017): unpaired, two generators, cycle consistency", build,
    knobs=tuple(PAPER),
    # G_A: A -> B, G_B: B -> A; the reconstructions pass through both
    routes={AtoB: ("G_A",), AtoB.cycle(): ("G_A", "G_B"), BtoA: ("G_B",), BtoA.cycle(): ("G_B", "G_A")},
)
