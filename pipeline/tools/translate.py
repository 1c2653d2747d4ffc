"""Translate images of your own with a trained model: a file, folder or glob in, a folder out.

    python -m pipeline.tools.translate photo.jpg --out translated/
    python -m pipeline.tools.translate 'shots/*.png' --model runs:/<run id>/generator_BtoA --out out/
    python -m pipeline.tools.translate shots/ --model latest_net_G_A.pth --out out/   (the authors' generator)
    python -m pipeline.tools.translate shots/ --target dusk --out dusk/   (a StarGAN model: any target domain)

The model: data/model.pt (default), an MLflow model or artifact (runs:/<id>/generator_AtoB,
models:/<name>/<version>; MLFLOW_TRACKING_URI or params mlflow.tracking_uri names the store), or a
generator published by the authors (pytorch-CycleGAN-and-pix2pix / BicycleGAN .pth; architecture
inferred from the weights, or given by --arch/--ngf/--norm/--nz). Outputs are PNGs named as the
inputs (<stem>.png; BicycleGAN samples <stem>_<k>.png). Any image size: by default each image is padded
to the network's stride and cropped back, so every pixel is kept at its own resolution; --fit resize
scales it to the training size and back (pipeline/translator.py says why pad is the default).
Grayscale becomes RGB, transparency is composited on white, the EXIF orientation is applied.
"""

from __future__ import annotations

import argparse
import glob
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline import onnx_translator
from pipeline.cli import fail, run_stage
from pipeline.config import GENERATOR_MODES
from pipeline.data.images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, RejectedImage, decode_rgb
from pipeline.errors import StageError
from pipeline.io import atomic_file, save_png
from pipeline.knobs import DEVICES

# torch is imported only on the path of a PyTorch model (run_torch): an .onnx model runs in onnxruntime alone.
log = logging.getLogger("pipeline")


def collect(inputs: list[str]) -> list[Path]:
    """Image files named by files, folders (their images, not recursive) and glob patterns, in order."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise StageError(f"{path}: no image files in this folder (suffixes {', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            hits = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
            if not hits:
                raise StageError(f"{item}: no such file or folder, and no file matches it as a pattern")
            files += hits
    seen: dict[str, Path] = {}
    for f in files:
        if f.stem in seen and seen[f.stem] != f:
            raise StageError(f"{seen[f.stem]} and {f} would both be written as {f.stem}.png; translate them "
                             f"into separate --out folders")
        seen[f.stem] = f
    return list(dict.fromkeys(files))


def read(path: Path) -> np.ndarray:
    """An image file as float32 (3, H, W) in [-1, 1]."""
    try:
        return onnx_translator.to_array(decode_rgb(path, DEFAULT_MAX_PIXELS))
    except RejectedImage as e:
        raise StageError(f"{path}: {e}") from None


def batches(files: list[Path], size: int):
    """Runs of up to `size` consecutive images of one shape (a batch stacks images of one size)."""
    run: list[tuple[Path, np.ndarray]] = []
    for f in files:
        x = read(f)
        if run and (len(run) == size or run[-1][1].shape != x.shape):
            yield run
            run = []
        run.append((f, x))
    if run:
        yield run


def write_all(files: list[Path], args: argparse.Namespace, label: str, translate_batch, n_codes: int) -> int:
    """Translate `files` in batches, each under each of the `n_codes` codes (translate_batch(x, k) ->
    (N, 3, H, W) in [-1, 1]), into --out as <stem>.png (<stem>_<k>.png for several samples)."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with tqdm(total=len(files), desc=label, disable=not args.progress) as bar:
        for batch in batches(files, args.batch_size):
            x = np.stack([a for _, a in batch])
            for k in range(n_codes):
                try:
                    y = translate_batch(x, k)
                except ValueError as e:  # an image below the network's stride: say which and what helps
                    raise StageError(f"{batch[0][0]}: {e}; use --fit resize") from None
                for (f, _), img in zip(batch, y, strict=True):
                    name = f"{f.stem}_{k}.png" if n_codes > 1 else f"{f.stem}.png"
                    with atomic_file(out / name) as tmp:
                        save_png(tmp, onnx_translator.to_uint8(img))
                    written += 1
            bar.update(len(batch))
    return written


def run_onnx(args: argparse.Namespace) -> int:
    """An exported generator in onnxruntime (pipeline/onnx_translator.py): fit pad only, no torch."""
    tr = onnx_translator.load(args.model)
    if args.fit != "pad" or args.style or args.direction and args.direction != tr.direction:
        raise StageError(f"{args.model}: an ONNX generator ({tr.model} {tr.direction}) runs with --fit pad, without "
                         f"--style, in its own direction; leave those options out or use the model file")
    if args.target is not None and not tr.multi_domain:
        raise StageError(f"{args.model}: a {tr.model} generator translates {tr.direction}; --target is for a "
                         f"multi-domain model (stargan)")
    if tr.multi_domain:
        onnx_translator.target_onehot(tr, args.target, 1)  # the target's error before any work
    files = collect(args.inputs)
    rng = np.random.default_rng(args.seed)
    zs = [rng.standard_normal((1, tr.nz)).astype(np.float32) for _ in range(args.n_samples)] if tr.nz else [None]

    def translate_batch(x: np.ndarray, k: int) -> np.ndarray:
        z = None if zs[k] is None else np.repeat(zs[k], len(x), axis=0)
        return onnx_translator.translate(tr, x, z=z, target=args.target)

    return write_all(files, args, f"{tr.direction} ({Path(args.model).name})", translate_batch, len(zs))


def run_torch(args: argparse.Namespace) -> int:
    import torch

    from pipeline import translator
    from pipeline.runtime import resolve_device

    device = resolve_device(args.device, "--device")
    arch = {k: v for k, v in (("arch", args.arch), ("ngf", args.ngf), ("norm", args.norm), ("nz", args.nz)) if v is not None}
    tr = translator.load(args.model, args.direction, device, authors_arch=arch, authors_encoder=args.encoder,
                        generator_mode=args.generator_mode, target=args.target)
    torch.manual_seed(args.seed)  # the dropout of a generator in training mode (pix2pix as its paper tests it)
    files = collect(args.inputs)
    zs = [None]
    if tr.nz and args.style:  # the style image's code, or random ones
        zs = [translator.encode_style(tr, torch.from_numpy(read(Path(args.style)))[None].to(device))]
    elif tr.nz:
        g = torch.Generator().manual_seed(args.seed)
        zs = [torch.randn(1, tr.nz, generator=g) for _ in range(args.n_samples)]

    def translate_batch(x: np.ndarray, k: int) -> np.ndarray:
        z = None if zs[k] is None else zs[k].expand(len(x), -1).to(device)
        return translator.translate(tr, torch.from_numpy(x).to(device), fit=args.fit, z=z).cpu().numpy()

    return write_all(files, args, f"{tr.direction} ({Path(tr.source).name})", translate_batch, len(zs))


def run(args: argparse.Namespace) -> int:
    """The model first (its errors before the inputs'), then the images."""
    return run_onnx(args) if args.model.endswith(".onnx") else run_torch(args)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline.tools.translate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    ap.add_argument("--out", required=True, help="output folder (created; files of the same name are replaced)")
    ap.add_argument("--model", default="data/model.pt",
                    help="data/model.pt, runs:/<id>/<name>, models:/<name>/<v>, an authors' .pth, or an exported .onnx "
                         "(python -m pipeline.tools.export; runs in onnxruntime without torch)")
    ap.add_argument("--direction", default=None,
                    help="AtoB (default) or BtoA (a CycleGAN of two domains of a multi-domain set: their letters, "
                         "e.g. CtoA); an MLflow generator model knows its own")
    ap.add_argument("--target", help="a multi-domain model (StarGAN): the target domain, by name (e.g. dusk) or "
                                     "letter (C); every input is translated into it")
    ap.add_argument("--fit", choices=onnx_translator.FITS, default="pad",
                    help="pad (default): native resolution; resize: the training size")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", choices=DEVICES, default="auto")
    ap.add_argument("--n-samples", type=int, default=1, help="BicycleGAN: random samples per input")
    ap.add_argument("--seed", type=int, default=0, help="BicycleGAN: seed of the random codes; pix2pix: of its test-time dropout")
    ap.add_argument("--generator-mode", choices=GENERATOR_MODES, default="paper",
                    help="paper: as the model's paper tests it (pix2pix: training mode, dropout on, each image's own "
                         "batch-norm statistics); eval: eval mode (params translate.generator_mode)")
    ap.add_argument("--style", help="BicycleGAN: a B image whose style (E's code) every output takes")
    g = ap.add_argument_group("the authors' .pth (inferred from the weights when not given)")
    g.add_argument("--arch", help="resnet_9blocks, resnet_6blocks, unet_128, unet_256, ...")
    g.add_argument("--ngf", type=int)
    g.add_argument("--norm", choices=("instance", "batch", "none"))
    g.add_argument("--nz", type=int, help="BicycleGAN G: latent code length")
    g.add_argument("--encoder", help="BicycleGAN: the authors' E .pth, for --style")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return ap


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[translate] %(message)s", stream=sys.stderr)
    if args.n_samples < 1 or args.batch_size < 1:
        fail("--n-samples and --batch-size must be at least 1")
    n = run_stage(run, args)
    print(f"wrote {n} image(s) to {args.out}")


if __name__ == "__main__":
    main()
