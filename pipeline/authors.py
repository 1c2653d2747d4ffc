"""Importing the generators the authors publish: junyanz/pytorch-CycleGAN-and-pix2pix
(latest_net_G_A.pth, latest_net_G_B.pth, latest_net_G.pth) and junyanz/BicycleGAN (G and E).

Their files are plain state dicts of their networks (models/networks.py). Ours are the same networks
(pipeline/models/networks.py), with these differences in the keys:
- ResNet generator: their residual blocks are `model.N.conv_block.M.*`, ours `model.N.block.M.*`.
- U-Net generator (pix2pix): identical keys and the same [skip, up] concatenation.
- BicycleGAN G (G_Unet_add_all): theirs nests one block per level, `model(.submodule)*i.down.K` /
  `.up.1`; ours lists the levels, `downs.i.K` / `ups.i.1`. Their up convs take [up, skip], ours
  [skip, up], so the input-channel halves of each inner ConvTranspose2d weight swap. Their
  constructor builds at least 6 levels whatever num_downs says (unet_64 and up).
- BicycleGAN E (E_ResNet): `conv.0`, `conv.k.conv.{2,5.0}`, `conv.k.shortcut.1`, `fc.0`, `fcVar.0`
  are our `features.0`, `features.k.conv.{2,5}`, `features.k.shortcut.1`, `mu`, `logvar`.
- Files trained with PyTorch 0.3 carry InstanceNorm running statistics (`running_mean`,
  `running_var`, `num_batches_tracked`) that today's InstanceNorm(track_running_stats=False) has no
  place for; their loader (base_model.py, __patch_instance_norm_state_dict) drops them, and so do we.

The architecture comes from flags (arch, ngf, norm, nz) or, when not given, from the weights: each
registered architecture that could match is built and the one whose keys and shapes fit is taken.
A file that fits none is one error listing the missing and unexpected keys and the mismatched shapes
against the closest candidate.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import StageError
from pipeline.models.networks import ENCODERS, GENERATORS, LATENT_GENERATORS, build_net

LEGACY_NORM_KEYS = ("running_mean", "running_var", "num_batches_tracked")
ENCODER_SIZE = {"resnet_64": 64, "resnet_128": 128, "resnet_256": 256}  # the image size each E pools to 1x1 at
TRAIN_SIZE = 256  # the authors' crop_size, the scale their generators saw in training (--fit resize)


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A .pth of the authors: a state dict of tensors (loaded without running pickle code)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # not a torch file, truncated, or pickled objects other than tensors
        raise StageError(f"{path}: not a PyTorch state dict ({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise StageError(f"{path}: expected a state dict of tensors (the authors' latest_net_*.pth), got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel


def resnet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.replace(".conv_block.", ".block."): v for k, v in state.items()}


def latent_unet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """G_Unet_add_all's nested keys -> LatentUnetGenerator's, with the [up, skip] halves swapped."""
    out = {}
    for k, v in state.items():
        m = re.fullmatch(r"model((?:\.submodule)*)\.(down|up)\.(\d+)\.(weight|bias)", k)
        if not m:
            out[k] = v
            continue
        level, part, index, kind = m[1].count(".submodule"), m[2], m[3], m[4]
        inner_up = part == "up" and kind == "weight" and f"model{m[1]}.submodule.down.1.weight" in state
        if inner_up:  # ConvTranspose2d weight (in, out, k, k): their input [up, skip] -> our [skip, up]
            half = v.shape[0] // 2
            v = torch.cat([v[half:], v[:half]])
        out[f"{part}s.{level}.{index}.{kind}"] = v
    return out


def encoder_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        k = re.sub(r"^fc\.0\.", "mu.", k)
        k = re.sub(r"^fcVar\.0\.", "logvar.", k)
        k = re.sub(r"^conv\.(\d+)\.conv\.5\.0\.", r"features.\1.conv.5.", k)
        k = re.sub(r"^conv\.", "features.", k)
        out[k] = v
    return out


def strip_legacy_norm(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Drop InstanceNorm running statistics of PyTorch 0.3 files, as the authors' loader does."""
    modules = dict(net.named_modules())
    def legacy(key: str) -> bool:
        prefix, _, leaf = key.rpartition(".")
        return leaf in LEGACY_NORM_KEYS and isinstance(modules.get(prefix), nn.InstanceNorm2d)
    return {k: v for k, v in state.items() if not legacy(k)}


def fit_report(state: dict[str, torch.Tensor], net: nn.Module) -> list[str]:
    """What keeps `state` from loading into `net`: missing and unexpected keys, mismatched shapes."""
    ours = net.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    shapes = [f"{k} {tuple(state[k].shape)} vs ours {tuple(ours[k].shape)}" for k in ours
              if k in state and state[k].shape != ours[k].shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            problems.append(f"{label} ({len(items)}): {', '.join(items[:4])}{', ...' if len(items) > 4 else ''}")
    return problems


def _first(state: dict[str, torch.Tensor], *keys: str) -> torch.Tensor:
    for k in keys:
        if k in state:
            return state[k]
    raise StageError(f"none of {', '.join(keys)} in the file: not a network of the authors' code")


def candidates(state: dict[str, torch.Tensor], arch: str | None, ngf: int | None, norm: str | None,
               nz: int | None) -> tuple[str, list[tuple[str, dict]], dict[str, torch.Tensor]]:
    """(role, [(name, constructor kwargs)], the state renamed to our keys) for a generator file."""
    norms = [norm] if norm else ["instance", "batch"]
    if any(".down." in k for k in state):  # BicycleGAN's G_Unet_add_all
        first = _first(state, "model.down.0.weight")
        nz = first.shape[1] - 3 if nz is None else nz
        kw = dict(in_channels=first.shape[1] - nz, out_channels=_first(state, "model.up.1.weight").shape[1],
                  ngf=ngf or first.shape[0], dropout=False, nz=nz, where_add="all")
        names = [arch] if arch else list(LATENT_GENERATORS)
        return "latent_generator", [(n, {**kw, "norm": m}) for n, m in itertools.product(names, norms)], latent_unet_keys(state)
    if any(".conv_block." in k for k in state):  # ResNet generator
        first, last = _first(state, "model.1.weight"), state[max((k for k in state if k.endswith(".weight")),
                                                                 key=lambda k: int(k.split(".")[1]))]
        kw = dict(in_channels=first.shape[1], out_channels=last.shape[0], ngf=ngf or first.shape[0], dropout=False)
        names = [arch] if arch else [n for n in GENERATORS if n.startswith("resnet")]
        return "generator", [(n, {**kw, "norm": m}) for n, m in itertools.product(names, norms)], resnet_keys(state)
    first = _first(state, "model.model.0.weight")  # the pix2pix U-Net
    kw = dict(in_channels=first.shape[1], out_channels=_first(state, "model.model.3.weight").shape[1],
              ngf=ngf or first.shape[0], dropout=True)  # dropout has no weights; pix2pix trains with it
    names = [arch] if arch else [n for n in GENERATORS if n.startswith("unet")]
    return "generator", [(n, {**kw, "norm": m}) for n, m in itertools.product(names, norms)], dict(state)


def fit(path: str | Path, role: str, options: list[tuple[str, dict]], state: dict[str, torch.Tensor],
        device: torch.device | str) -> tuple[nn.Module, dict]:
    """The first candidate the state loads into (strictly), or one error against the closest."""
    reports = []
    for name, kwargs in options:
        try:
            net = build_net(role, name, **kwargs)
        except (ValueError, TypeError) as e:
            reports.append((name, kwargs, [str(e)]))
            continue
        ours = strip_legacy_norm(state, net)
        problems = fit_report(ours, net)
        if not problems:
            net.load_state_dict(ours)
            return net.to(device).eval(), {"role": role, "name": name, "kwargs": kwargs}
        reports.append((name, kwargs, problems))
    name, kwargs, problems = min(reports, key=lambda r: sum(len(p) for p in r[2]))
    tried = ", ".join(sorted({n for n, _, _ in reports}))
    raise StageError(f"{path} does not fit {name} (ngf={kwargs.get('ngf')}, norm={kwargs.get('norm')}; tried {tried}): "
                     f"{'; '.join(problems)}. Give the architecture with --arch/--ngf/--norm/--nz, or check the file")


def load_generator(path: str | Path, device: torch.device | str = "cpu", *, arch: str | None = None,
                   ngf: int | None = None, norm: str | None = None, nz: int | None = None) -> tuple[nn.Module, dict]:
    """An authors' generator file as our network in eval mode; info: its spec, nz and training size."""
    state = read_state(path)
    try:
        role, options, ours = candidates(state, arch, ngf, norm, nz)
    except StageError as e:
        raise StageError(f"{path}: {e}") from None
    net, spec = fit(path, role, options, ours, device)
    return net, {**spec, "nz": spec["kwargs"].get("nz", 0), "train_size": TRAIN_SIZE}


def load_encoder(path: str | Path, device: torch.device | str = "cpu") -> tuple[nn.Module, int]:
    """BicycleGAN's E_ResNet file as our ResnetEncoder in eval mode, and the image size it was built for."""
    state = encoder_keys(read_state(path))
    try:
        first, mu = _first(state, "features.0.weight"), _first(state, "mu.weight")
    except StageError as e:
        raise StageError(f"{path}: {e} (an encoder E_ResNet was expected)") from None
    kw = dict(in_channels=first.shape[1], nz=mu.shape[0], nef=first.shape[0])
    net, spec = fit(path, "encoder", [(n, {**kw, "norm": m}) for n, m in itertools.product(ENCODERS, ("instance", "batch"))],
                    state, device)
    return net, ENCODER_SIZE[spec["name"]]
