"""Layers every architecture shares: the normalisations by name, whether a conv before them needs a bias,
the residual block of the ResNet generators, and a code (latent z or one-hot label c) spread over the image."""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    # Instance norm without affine parameters and running stats, as in CycleGAN.
    "instance": functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False),
    "batch": functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True),
    "none": None,
}


def norm_layer(name: str, channels: int) -> nn.Module:
    layer = NORMS[name]
    return nn.Identity() if layer is None else layer(channels)


def use_bias(norm: str) -> bool:
    # BatchNorm has its own affine shift, so the preceding conv needs no bias; instance norm (no
    # affine) and no norm do.
    return norm != "batch"


def tile(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A latent code (N, nz) spread over the spatial size of `like`: (N, nz, H, W)."""
    return z[:, :, None, None].expand(-1, -1, like.shape[-2], like.shape[-1])


class ResnetBlock(nn.Module):
    """Two 3x3 convs with reflection padding and a residual connection (R256 in the paper)."""

    def __init__(self, dim: int, norm: str, dropout: bool):
        super().__init__()
        bias = use_bias(norm)
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim), nn.ReLU(True)]
        if dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), norm_layer(norm, dim)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)
