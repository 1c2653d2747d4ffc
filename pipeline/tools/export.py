"""Export a trained generator to ONNX, for onnxruntime and anything else that runs ONNX.

    python -m pipeline.tools.export --out generator_AtoB.onnx                       (data/model.pt, A -> B)
    python -m pipeline.tools.export --direction BtoA --out generator_BtoA.onnx
    python -m pipeline.tools.export --model runs:/<run id>/generator_AtoB --out g.onnx
    python -m pipeline.tools.export --model latest_net_G_A.pth --out g.onnx        (an authors' generator)
    python -m pipeline.tools.export --generator-mode eval --out pix2pix.onnx       (pix2pix: see below)

The graph's inputs: `image` (N, 3, H, W) in [-1, 1], H and W multiples of the network's stride; BicycleGAN
adds `z` (N, nz), StarGAN `target` (N, k), one-hot; its output `translation`. Batch and size are dynamic;
the opset is named (--opset); the model's kind, direction, domains, stride, normalisation and training
fingerprint are in the file's metadata (pipeline/export.py). `python -m pipeline.tools.translate --model
g.onnx` runs it with the translate tool's padding, naming and batching, without torch.

pix2pix is tested by its paper in training mode (dropout on, each image's own batch statistics); an ONNX
graph is exported in eval mode, so a pix2pix model needs --generator-mode eval (the translations then
differ from the paper's test mode: docs/using-models.md).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.cli import run_stage
from pipeline.config import GENERATOR_MODES


def run(args: argparse.Namespace) -> str:
    from pipeline import export, translator

    arch = {k: v for k, v in (("arch", args.arch), ("ngf", args.ngf), ("norm", args.norm), ("nz", args.nz)) if v is not None}
    load = dict(authors_arch=arch, generator_mode=args.generator_mode)
    try:
        tr = translator.load(args.model, args.direction, "cpu", **load)
    except translator.NeedsTarget:  # StarGAN: the target domain is an input of the graph
        tr = translator.load(args.model, None, "cpu", target="A", **load)
    path = export.export(tr, args.out, args.opset)
    inputs = ", ".join(export.input_names(tr))
    return f"exported {tr.model} {'(any target domain)' if tr.target is not None else tr.direction} -> {path} " \
           f"(opset {args.opset}; inputs {inputs})"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline.tools.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the ONNX file to write (replaced atomically)")
    ap.add_argument("--model", default="data/model.pt",
                    help="data/model.pt, runs:/<id>/<name>, models:/<name>/<v> or an authors' .pth")
    ap.add_argument("--direction", help="AtoB (default) or BtoA; an MLflow generator model knows its own")
    ap.add_argument("--generator-mode", choices=GENERATOR_MODES, default="paper",
                    help="paper (default): refused for a generator its paper tests in training mode (pix2pix); "
                         "eval: export it in eval mode")
    ap.add_argument("--opset", type=int, default=18, help="the ONNX opset (default 18)")
    g = ap.add_argument_group("the authors' .pth (inferred from the weights when not given)")
    g.add_argument("--arch", help="resnet_9blocks, resnet_6blocks, unet_128, unet_256, ...")
    g.add_argument("--ngf", type=int)
    g.add_argument("--norm", choices=("instance", "batch", "none"))
    g.add_argument("--nz", type=int, help="BicycleGAN G: latent code length")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[export] %(message)s", stream=sys.stderr)
    print(run_stage(run, args))


if __name__ == "__main__":
    main()
