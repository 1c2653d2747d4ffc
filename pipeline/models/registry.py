"""The models the pipeline trains (params `model`), as a plain dict of their declarations
(pipeline/models/<name>/__init__.py: section, rules, builder, routes, capabilities). torch-free."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.models import bicyclegan, cut, cyclegan, pix2pix, stargan
from pipeline.models.spec import ModelSpec

if TYPE_CHECKING:
    from pipeline.config import Params

MODELS: dict[str, ModelSpec] = {
    "cyclegan": cyclegan.SPEC,      # Zhu et al. 2017
    "pix2pix": pix2pix.SPEC,        # Isola et al. 2017, the paired baseline
    "bicyclegan": bicyclegan.SPEC,  # Zhu et al. 2017b, multimodal
    "stargan": stargan.SPEC,        # Choi et al. 2018, k domains
    "cut": cut.SPEC,                # Park et al. 2020, contrastive, one generator
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
