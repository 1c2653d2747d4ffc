"""The trained model (paths.model): each generator's constructor spec and weights, and the params of
its training. Later stages rebuild the generators from this file alone; it holds only tensors and plain
data (loaded with weights_only=True). It is a function of the training's inputs: the same params, data
and code give the same bytes. The MLflow run that trained it is found by its fingerprint
(tracking.training_run), so no run id, store location or clock time is written here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline import checkpoint
from pipeline.config import GENERATOR_MODES, Params, to_dict
from pipeline.errors import StageError
from pipeline.models.networks import build
from pipeline.models.registry import MODELS

if TYPE_CHECKING:
    from pipeline.models.base import GANModel

REQUIRED = ("model", "nets", "config", "fingerprint", "steps", "test_mode")
# the sections of params.yaml that describe a training, beside the model's own section and knobs
TRAINING_SECTIONS = ("seed", "model", "data", "prepare", "train")


def model_config(params: Params) -> dict:
    """The params of this model's training: its own section, the top-level knobs it reads, and the data,
    preparation and training sections; not the other models' sections, nor where outputs go or runs are
    tracked."""
    own = (params.model, *MODELS[params.model].knobs, *TRAINING_SECTIONS)
    return {k: v for k, v in to_dict(params).items() if k in own}


def state(params: Params, model: GANModel, fingerprint: str, steps: int,
          sync: dict | None = None, domains: dict[str, str] | None = None, pair: list[str] | None = None) -> dict:
    """What later stages need, and nothing else. `domains`: the prepared data's {letter: domain name};
    `pair`: the letters a two-domain model translates between, its A and B (None: every domain);
    `fingerprint`: the training's identity (stages/train.py), which also tags its MLflow run."""
    return {
        "model": params.model,
        "domains": domains or {"A": "A", "B": "B"},
        "pair": pair,
        "nets": {k: {"spec": model.nets[k].spec, "state_dict": model.nets[k].module.state_dict()}
                 for k in model.generators},
        "config": model_config(params),
        "fingerprint": fingerprint,
        "steps": steps,
        "test_mode": model.test_mode,  # the generators' mode at test time under the model's paper
        "distributed": sync,  # world size, backend and every rank's weight hash (all equal) under torchrun
    }


def save(path: str | Path, model_state: dict) -> None:
    checkpoint.save(path, model_state)


def load(path: str | Path, device: torch.device | str = "cpu",
         generator_mode: str = "eval") -> tuple[dict, dict[str, nn.Module]]:
    """(the file's contents, {name: generator}); a file this version cannot use is one clear error that
    says how to re-create it. generator_mode "eval" gives eval mode; "paper" the mode the model's
    paper tests in (the file's test_mode, GANModel.test_mode: pix2pix's generator in training mode)."""
    if generator_mode not in GENERATOR_MODES:
        raise ValueError(f"generator mode {generator_mode!r}; valid: {', '.join(GENERATOR_MODES)}")
    redo = "re-create it with this version: dvc repro train"
    ckpt = checkpoint.load(path, device, remake="dvc repro train")
    missing = [k for k in REQUIRED if k not in ckpt]
    if missing:
        raise StageError(f"{path}: a model file of another version of the pipeline (no {', '.join(missing)}); {redo}")
    nets = {}
    for name, entry in ckpt["nets"].items():
        try:
            net = build(entry["spec"]).to(device)
            net.load_state_dict(entry["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StageError(f"{path}: network {name} does not rebuild ({type(e).__name__}: {first}); {redo}") from None
        nets[name] = net.train(generator_mode == "paper" and ckpt["test_mode"] == "train")
    return ckpt, nets
