"""Translating images with an exported generator (pipeline/export.py) in onnxruntime, without torch.

The same rule as for a model file (pipeline/translator.py, fit "pad"): an image is reflection-padded on
the right and bottom to a multiple of the network's stride, translated at its own resolution and cropped
back. numpy's "reflect" padding is torch's (the edge pixel is not repeated).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import StageError

# How an image meets a generator's input size (pipeline/translator.py): "pad" to the stride and crop back (the
# default, every pixel kept), or "resize" to the training size and back (torch only).
FITS = ("pad", "resize")

# The metadata keys of an exported generator (pipeline/export.py writes them, this module reads them).
META = {name: f"pipeline.{name}" for name in (
    "model", "direction", "domains", "normalisation", "stride", "train_size", "nz", "n_domains", "fingerprint",
    "opset", "source")}
NORMALISATION = "RGB, NCHW float32, [-1, 1] = pixel / 127.5 - 1; the translation in the same range"


@dataclass
class OnnxTranslator:
    """An exported generator, ready for images of any size."""

    session: object        # onnxruntime.InferenceSession
    meta: dict[str, str]
    source: str

    @property
    def model(self) -> str:
        return self.meta[META["model"]]

    @property
    def stride(self) -> int:
        return int(self.meta[META["stride"]])

    @property
    def nz(self) -> int:
        return int(self.meta[META["nz"]])

    @property
    def domains(self) -> dict[str, str]:
        return json.loads(self.meta[META["domains"]])

    @property
    def multi_domain(self) -> bool:
        return int(self.meta[META["n_domains"]]) > 0

    @property
    def direction(self) -> str:
        return self.meta[META["direction"]]


def to_array(img) -> np.ndarray:
    """PIL RGB -> float32 (3, H, W) in [-1, 1]: data.datasets.to_tensor, in numpy."""
    a = np.asarray(img.convert("RGB"), dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
    return a.transpose(2, 0, 1).copy()


def to_uint8(a: np.ndarray) -> np.ndarray:
    """float (3, H, W) in [-1, 1] -> uint8 (H, W, 3): data.datasets.to_image, in numpy."""
    a = (np.clip(a.astype(np.float32), -1, 1) + np.float32(1)) * np.float32(127.5)
    return np.round(a).astype(np.uint8).transpose(1, 2, 0)


def require(module: str):
    """An optional package of the `onnx` extra, or one line saying how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise StageError(f"{module} is not installed: pip install -e '.[onnx]'") from None


def load(path: str | Path) -> OnnxTranslator:
    """An ONNX file this pipeline exported; one line naming the file and the fix when it is not one."""
    path = Path(path)
    ort = require("onnxruntime")
    if not path.is_file():
        raise StageError(f"{path}: no such file; export one with python -m pipeline.tools.export")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        raise StageError(f"{path}: not an ONNX model ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if META["model"] not in meta:
        raise StageError(f"{path}: an ONNX model, but not a generator exported by this pipeline (no {META['model']} "
                         f"metadata); export one with python -m pipeline.tools.export")
    return OnnxTranslator(session, meta, str(path))


def target_onehot(tr: OnnxTranslator, target: str | None, n: int) -> np.ndarray:
    """StarGAN's one-hot target label for a batch of n, from the domain's name or letter."""
    letters = list(tr.domains)
    for i, (letter, name) in enumerate(tr.domains.items()):
        if target in (letter, name):
            out = np.zeros((n, len(letters)), dtype=np.float32)
            out[:, i] = 1
            return out
    raise StageError(f"{tr.source}: a {tr.model} model translates into any of its domains: pass --target, one of "
                     f"{', '.join(tr.domains.values())}")


def padding(h: int, w: int, stride: int) -> tuple[int, int]:
    """The rows (bottom) and columns (right) that bring an h x w image to multiples of `stride`: the padding
    rule of both translators. Reflection cannot pad by as much as the image's own size."""
    ph, pw = -h % stride, -w % stride
    if ph >= h or pw >= w:
        raise ValueError(f"{w}x{h} is too small to pad to the network's stride {stride} by reflection")
    return ph, pw


def pad_to_stride(x: np.ndarray, stride: int) -> np.ndarray:
    """Reflection-pad (N, C, H, W) on the right and bottom to multiples of `stride`."""
    ph, pw = padding(*x.shape[-2:], stride)
    return np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="reflect") if ph or pw else x


def translate(tr: OnnxTranslator, x: np.ndarray, *, z: np.ndarray | None = None,
              target: str | None = None) -> np.ndarray:
    """A batch (N, 3, H, W) float32 in [-1, 1] of one size -> its translations, same size."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise StageError(f"{tr.source}: expects images of shape (N, 3, H, W) (RGB), got {tuple(x.shape)}")
    feeds = {"image": pad_to_stride(x.astype(np.float32), tr.stride)}
    if tr.nz:
        if z is None or z.shape != (len(x), tr.nz):
            raise StageError(f"{tr.source}: a {tr.model} generator needs a latent code z of shape ({len(x)}, {tr.nz})")
        feeds["z"] = z.astype(np.float32)
    if tr.multi_domain:
        feeds["target"] = target_onehot(tr, target, len(x))
    h, w = x.shape[-2:]
    return tr.session.run(["translation"], feeds)[0][..., :h, :w]
