"""A trained generator as an ONNX file, for use outside PyTorch (pipeline/onnx_translator.py runs one).

The graph takes images of any batch size and any height and width that are multiples of the network's
stride (the translate tool pads to them by reflection and crops back, as for a model file):

    image   float32 (N, 3, H, W), RGB in [-1, 1] (pixel / 127.5 - 1)
    z       float32 (N, nz)       BicycleGAN's latent code (G(A, z))
    target  float32 (N, k)        StarGAN's target domain c, one-hot over the k domains (G(x, c))
    -> translation  float32 (N, 3, H, W) in [-1, 1]

What the model is (kind, direction, domains, stride, training size, the training's fingerprint) is stored
in the file's metadata (keys `pipeline.*`, META below). The generator is exported in eval mode: pix2pix as
its paper tests it (training mode: dropout on, each image's own batch statistics) is a different function,
which an eval-mode graph does not reproduce; exporting such a generator needs generator_mode "eval"
(docs/using-models.md says what changes).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import StageError
from pipeline.io import atomic_file
from pipeline.onnx_translator import META, NORMALISATION, require
from pipeline.translator import Translator

# ONNX opset of the exported graphs, named because old default opsets mismatched outputs; 18 is the
# newest that onnxruntime 1.16+ runs and the TorchScript-based exporter writes.
OPSET = 18


class _Generator(nn.Module):
    """The generator with its inputs named as the graph's: G(image), G(image, z) or G(image, target)."""

    def __init__(self, net: nn.Module, conditioned: bool):
        super().__init__()
        self.net, self.conditioned = net, conditioned

    def forward(self, image: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(image, extra) if self.conditioned else self.net(image)


def input_names(tr: Translator) -> list[str]:
    return ["image"] + (["z"] if tr.nz else []) + (["target"] if tr.target is not None else [])


def example_inputs(tr: Translator, size: int) -> tuple[torch.Tensor, ...]:
    """A batch of one at `size` (a multiple of the stride), with its code or label."""
    device = next(tr.net.parameters()).device
    image = torch.zeros(1, 3, size, size, device=device)
    if tr.nz:
        return image, torch.zeros(1, tr.nz, device=device)
    if tr.target is not None:
        return image, tr.condition(1, device)
    return (image,)


def metadata(tr: Translator, opset: int) -> dict[str, str]:
    return {
        META["model"]: tr.model, META["direction"]: "any" if tr.target is not None else str(tr.direction),
        META["domains"]: json.dumps(tr.domains), META["normalisation"]: NORMALISATION,
        META["stride"]: str(tr.stride), META["train_size"]: str(tr.train_size), META["nz"]: str(tr.nz),
        META["n_domains"]: str(tr.n_domains), META["fingerprint"]: tr.fingerprint, META["opset"]: str(opset),
        META["source"]: Path(tr.source).name,
    }


def export(tr: Translator, path: str | Path, opset: int = OPSET) -> Path:
    """Write `tr`'s generator to `path` as ONNX (atomically), with dynamic batch and spatial size."""
    onnx = require("onnx")
    if tr.net.training:
        raise StageError(f"{tr.source}: its generator is tested in training mode (pix2pix under its paper: dropout on, "
                         f"each image's own batch statistics), which an ONNX graph in eval mode does not reproduce; pass "
                         f"--generator-mode eval to export it in eval mode (running statistics, no dropout)")
    names = input_names(tr)
    spatial = {0: "batch", 2: "height", 3: "width"}
    axes = {"image": spatial, "translation": spatial, **{n: {0: "batch"} for n in names[1:]}}
    module = _Generator(tr.net, len(names) > 1).eval()
    with torch.no_grad(), atomic_file(Path(path)) as tmp, warnings.catch_warnings():
        # the tracer's notes on shape checks (a U-Net's stride test) and on constant folding: the graph is
        # checked against PyTorch by tests/test_export.py, not by these
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example_inputs(tr, max(tr.stride, 32)), str(tmp), input_names=names,
                          output_names=["translation"], dynamic_axes=axes, opset_version=opset, dynamo=False)
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, metadata(tr, opset))
        onnx.save(graph, str(tmp))
    return Path(path)
