"""Translating images of one's own with a trained generator: a model file of this pipeline
(data/model.pt), an MLflow model or checkpoint (runs:/<id>/..., models:/<name>/<version>), or a
generator published by the authors (.pth, pipeline/authors.py).

Any image size: the generators are fully convolutional, so by default (fit "pad") an image is
reflection-padded on the right and bottom to a multiple of the network's stride (4 for the ResNet
generator, 2**levels for a U-Net), translated at its own resolution and cropped back: every pixel is
kept and none is resampled. Fit "resize" instead scales the image to the size the model was trained
at and the translation back to the image's size: the scale the model saw in training, at the cost
of resampling twice. The authors' test.py (--preprocess none) resizes to a multiple of 4 instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.artifacts import model as model_file
from pipeline.domains import TWO_DOMAIN_NAMES, TWO_DOMAIN_ROUTES, AtoB, Route, target_label
from pipeline.errors import StageError
from pipeline.models.registry import MODELS

# the translate tool's --fit and the padding rule, shared with the ONNX path: their home is torch-free
from pipeline.onnx_translator import FITS, padding  # noqa: F401


def generator_of(model: str, domains: dict[str, str], pair: list[str] | None = None) -> dict[Route, str]:
    """{direction: the generator that translates it} of a model file's model; `domains` {letter: name};
    `pair`: the letters a two-domain model translates between on a multi-domain set (None: A and B). A two-domain
    model's directions are its declaration's (the authors' names: G_A = G: A -> B); a multi-domain model's one G
    translates any image "to<X>" (Route(None, X)), into the domain X of its target label."""
    spec = MODELS[model]
    if spec.multi_domain:
        return {Route(None, letter): "G" for letter in domains}
    return {r.relabel(pair): g for r, g in spec.directions.items()}


def target_direction(domains: dict[str, str], target: str) -> Route:
    """A multi-domain model's direction to the domain named `target` (its name, e.g. dusk, or its letter)."""
    for letter, name in domains.items():
        if target in (letter, name):
            return Route(None, letter)
    raise StageError(f"target domain {target!r} is not one of this model's domains: "
                     f"{', '.join(f'{k} ({v})' for k, v in domains.items())}")


class NeedsTarget(StageError):
    """A multi-domain model (StarGAN) was asked for without its target domain."""


MLFLOW_SCHEMES = ("runs:/", "models:/", "mlflow-artifacts:/")
MODEL_FILE = "model.pt"  # the name of the model file inside an MLflow model's artifacts


@dataclass
class Translator:
    """One direction of a trained model, ready for images of any size."""

    net: nn.Module            # the generator; in training mode (pix2pix under its paper's protocol) it sees one image at a time
    direction: Route
    train_size: int           # the crop size it was trained at ("resize" fits images to it)
    source: str               # where it came from, for logs and errors
    nz: int = 0               # > 0: a multimodal G(x, z) (BicycleGAN)
    encoder: nn.Module | None = None  # BicycleGAN's E(B) -> (mu, logvar): the style of a given image
    style_size: int = 0       # the image size E reads (0 = train_size)
    target: int | None = None  # a multi-domain G(x, c) (StarGAN): the index of the target domain c
    n_domains: int = 0
    model: str = ""           # the model's kind (cyclegan, ...; "authors" for an authors' .pth)
    domains: dict[str, str] = field(default_factory=lambda: dict(TWO_DOMAIN_NAMES))  # {letter: name}
    fingerprint: str = ""     # the training's identity (training.fingerprint), when the model file has it

    def condition(self, n: int, device: torch.device) -> torch.Tensor:
        """StarGAN's target label c, one-hot, for a batch of n images."""
        assert self.target is not None
        return target_label(self.target, n, self.n_domains, device)

    @property
    def stride(self) -> int:
        return int(getattr(self.net, "stride", 1))


def from_model_file(path: str | Path, direction: Route | str | None, device: torch.device | str = "cpu",
                    generator_mode: str = "paper", target: str | None = None) -> Translator:
    """The generator of `direction` (None: the model's first) in a model file of this pipeline
    (pipeline/artifacts/model.py), in the mode its paper tests it in (generator_mode "paper") or in eval
    mode ("eval"). A multi-domain model (StarGAN) needs the `target` domain (its name or letter) or a
    direction to<X>."""
    ckpt, nets = model_file.load(path, device, generator_mode)
    direction = Route.parse(direction) if isinstance(direction, str) else direction  # MLflow's metadata
    domains = ckpt.get("domains") or TWO_DOMAIN_NAMES
    routes = generator_of(ckpt["model"], domains, ckpt.get("pair"))
    multi = MODELS[ckpt["model"]].multi_domain
    if target is not None:
        if not multi:
            raise StageError(f"{path}: a {ckpt['model']} model translates {' and '.join(map(str, routes))}; --target is for a "
                             f"multi-domain model (stargan): pass --direction instead")
        direction = target_direction(domains, target)
    if direction is None and multi:
        raise NeedsTarget(f"{path}: a {ckpt['model']} model translates into any of its domains: pass --target, one of "
                         f"{', '.join(domains.values())}")
    direction = direction or next(iter(routes))
    if direction not in routes:
        if multi:
            raise StageError(f"{path}: a {ckpt['model']} model translates into any of its domains: pass --target, one of "
                             f"{', '.join(domains.values())}, instead of --direction {direction}")
        raise StageError(f"{path}: a {ckpt['model']} model translates {' and '.join(map(str, routes))} only, not {direction}; "
                         f"pass --direction {next(iter(routes))}")
    config = ckpt["config"]
    nz = config[ckpt["model"]]["nz"] if MODELS[ckpt["model"]].multimodal else 0
    tr = Translator(nets[routes[direction]], direction, config["train"]["crop_size"], str(path), nz, nets.get("E"),
                    model=ckpt["model"], domains=dict(domains), fingerprint=ckpt.get("fingerprint", ""))
    if multi:
        tr.target, tr.n_domains = list(domains).index(direction.target), len(domains)
    return tr


def mlflow_local_path(uri: str) -> Path:
    """An MLflow model or artifact (runs:/<id>/<path>, models:/<name>/<version>) downloaded to a local path."""
    import mlflow

    from pipeline.tracking import fluent_store, tracking_uri

    store = tracking_uri(None)  # MLFLOW_TRACKING_URI, else the repository's own store
    try:
        with fluent_store(store):
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    except Exception as e:  # MlflowException, OSError: the URI does not resolve in this tracking store
        raise StageError(f"{uri}: cannot be fetched from the MLflow store {store} "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); check the run id and name, "
                         f"and MLFLOW_TRACKING_URI") from None


def mlflow_direction(folder: Path) -> str | None:
    """The direction an MLflow generator model of this pipeline was logged for (MLmodel's metadata)."""
    import yaml

    meta = folder / "MLmodel"
    if not meta.exists():
        return None
    return ((yaml.safe_load(meta.read_text()) or {}).get("metadata") or {}).get("direction")


def load(source: str, direction: str | None = None, device: torch.device | str = "cpu", *,
         authors_arch: dict | None = None, authors_encoder: str | None = None, generator_mode: str = "paper",
         target: str | None = None) -> Translator:
    """A Translator from any source the translate command accepts (see the module docstring); `target`:
    the target domain of a multi-domain model."""
    direction = parse_direction(direction)
    path = mlflow_local_path(source) if source.startswith(MLFLOW_SCHEMES) else Path(source)
    if path.is_dir():  # an MLflow model: MLmodel + artifacts/model.pt (pipeline/mlflow_model.py)
        inner = path / "artifacts" / MODEL_FILE
        if not inner.exists():
            raise StageError(f"{source}: a folder without artifacts/{MODEL_FILE}; pass a model this pipeline logged "
                             f"(runs:/<id>/generator_AtoB), a model file (data/model.pt) or an authors' .pth")
        logged = mlflow_direction(path)
        logged = None if logged is None else Route.parse(logged)
        if direction and logged and direction != logged:
            raise StageError(f"{source} translates {logged}, not {direction}; pass its generator_{direction} model, "
                             f"or leave out --direction")
        tr = from_model_file(inner, None if target else direction or logged, device, generator_mode, target)
        tr.source = source
        return tr
    if not path.exists():
        raise StageError(f"{source}: no such model file; train one (dvc repro), or pass runs:/<id>/generator_AtoB "
                         f"or an authors' .pth")
    if path.suffix == ".pth":
        from pipeline import authors

        if target is not None:
            raise StageError(f"{source}: --target is for a multi-domain model of this pipeline; the authors' "
                             f"generators translate one direction: leave it out")
        net, info = authors.load_generator(path, device=device, **(authors_arch or {}))
        encoder, style_size = authors.load_encoder(authors_encoder, device=device) if authors_encoder else (None, 0)
        return Translator(net, direction or AtoB, info["train_size"], str(path), info["nz"], encoder, style_size,
                          model="authors")
    return from_model_file(path, direction, device, generator_mode, target)


def parse_direction(text: str | None) -> Route | None:
    """The --direction of the translate command: a route between two domains."""
    try:
        route = None if text is None else Route.parse(text)
    except ValueError:
        route = None
    if text is not None and (route is None or route.source is None or route.is_cycle):
        raise StageError(f"direction {text!r}; valid: {', '.join(map(str, TWO_DOMAIN_ROUTES))} (on a multi-domain "
                         f"set, e.g. CtoA; a multi-domain model: --target)")
    return route


def pad_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Reflection-pad (N, C, H, W) on the right and bottom to multiples of `stride`."""
    ph, pw = padding(*x.shape[-2:], stride)
    return F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)


@torch.no_grad()
def translate(tr: Translator, x: torch.Tensor, *, fit: str = "pad", z: torch.Tensor | None = None) -> torch.Tensor:
    """A batch of images (N, 3, H, W) in [-1, 1] of one size -> their translations, same size."""
    h, w = x.shape[-2:]
    if fit == "resize":
        x_in = resize(x, (tr.train_size, tr.train_size))
    else:
        x_in = pad_to_stride(x, tr.stride)
    if tr.target is not None:  # StarGAN: G(x, c)
        z = tr.condition(len(x_in), x_in.device)
    conditioned = tr.nz or tr.target is not None
    if tr.net.training:  # batch-norm statistics of each image alone, as the authors' test.py (batch 1)
        y = torch.cat([tr.net(x_in[i:i + 1], z[i:i + 1]) if conditioned else tr.net(x_in[i:i + 1])
                       for i in range(len(x_in))])
    else:
        y = tr.net(x_in, z) if conditioned else tr.net(x_in)
    return resize(y, (h, w)) if fit == "resize" else y[..., :h, :w]


@torch.no_grad()
def encode_style(tr: Translator, style: torch.Tensor) -> torch.Tensor:
    """BicycleGAN: the mean code E(style) of a B image (1, 3, H, W), at the size E was trained at."""
    if tr.encoder is None:
        raise StageError(f"{tr.source}: no encoder E to read a style from (only BicycleGAN models have one)")
    size = tr.style_size or tr.train_size
    return tr.encoder(resize(style, (size, size)))[0]
