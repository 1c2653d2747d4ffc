"""CUT's networks and PatchNCE (Park et al. 2020; the authors' models/networks.py and models/patchnce.py).

- Anti-aliased resampling (Zhang 2019), the authors' default (no --no_antialias): a stride-2 layer becomes a
  stride-1 layer followed by a fixed binomial blur subsampled by 2 (BlurDown, their Downsample); an up
  layer becomes a fixed binomial transposed blur (BlurUp, their Upsample) followed by a 3x3 conv.
- The generator's layers are one nn.Sequential in the authors' order, so that nce_layers (0, 4, 8, 12, 16)
  name the same tensors as theirs: the padded input, the two down convs, residual blocks 1 and 5.
- PatchSampleF (netF = mlp_sample): per tapped layer, num_patches positions (the same for the query and the
  key, and for every image of the batch), each feature vector through a 2-layer MLP, L2-normalised.
  The authors create the MLPs lazily on the first batch; ours are created with the channel counts of the
  taps, known from the generator's width.
- patch_nce: Eq. 2-3 of the paper, an (N+1)-way classification of each query patch: its positive is the key
  patch at the same position, its negatives the other N key patches of the same image (temperature tau).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.layers import ResnetBlock, norm_layer, use_bias


def binomial_filter(size: int) -> torch.Tensor:
    """The size x size outer product of a binomial row ([1, 2, 1], [1, 3, 3, 1]), summing to 1."""
    row = torch.tensor([float(math.comb(size - 1, k)) for k in range(size)])
    f = row[:, None] * row[None, :]
    return f / f.sum()


class BlurDown(nn.Module):
    """Blur with the 3x3 binomial filter, then keep every second pixel (reflection padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("filt", binomial_filter(3)[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReflectionPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(self.pad(x), self.filt, stride=2, groups=x.shape[1])


class BlurUp(nn.Module):
    """Double the resolution with the 4x4 binomial filter as a fixed transposed convolution (x4: the
    zeros inserted between pixels), replicate padding, cropped to exactly twice the input size."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("filt", (binomial_filter(4) * 4)[None, None].repeat(channels, 1, 1, 1))
        self.pad = nn.ReplicationPad2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(self.pad(x), self.filt, stride=2, padding=2, groups=x.shape[1])
        return y[:, :, 1:-1, 1:-1]


class CUTGenerator(nn.Module):
    """The ResNet generator of CUT: c7s1-ngf, two anti-aliased down blocks, n_blocks residual blocks, two
    anti-aliased up blocks, c7s1-3 and tanh."""

    def __init__(self, in_channels: int, out_channels: int, ngf: int, norm: str, n_blocks: int):
        super().__init__()
        bias = use_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, padding=1, bias=bias), norm_layer(norm, 2 * c), nn.ReLU(True), BlurDown(2 * c)]
        layers += [ResnetBlock(ngf * 4, norm, False) for _ in range(n_blocks)]
        for i in (2, 1):
            c = ngf * 2 ** i
            layers += [BlurUp(c), nn.Conv2d(c, c // 2, 3, padding=1, bias=bias), norm_layer(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.stride = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def encode(self, x: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """The outputs of the sequential layers `layers` (ascending), stopping after the last of them."""
        feats = []
        for i, layer in enumerate(self.model[: max(layers) + 1]):
            x = layer(x)
            if i in layers:
                feats.append(x)
        return feats


class CUTDiscriminator(nn.Module):
    """The 70x70 PatchGAN with anti-aliased subsampling: each stride-2 conv becomes a stride-1 conv and BlurDown."""

    def __init__(self, in_channels: int, ndf: int, norm: str, n_layers: int = 3):
        super().__init__()
        bias = use_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, padding=1), nn.LeakyReLU(0.2, True), BlurDown(ndf)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1, bias=bias), norm_layer(norm, ndf * mult),
                       nn.LeakyReLU(0.2, True), BlurDown(ndf * mult)]
        prev, mult = mult, min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, padding=1, bias=bias), norm_layer(norm, ndf * mult),
                   nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, padding=1)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PatchSampleF(nn.Module):
    """H_l of the paper: per tapped layer, a 2-layer MLP projection to `nc` channels of the sampled patches."""

    def __init__(self, channels: list[int], nc: int):
        super().__init__()
        self.mlps = nn.ModuleList(nn.Sequential(nn.Linear(c, nc), nn.ReLU(), nn.Linear(nc, nc)) for c in channels)

    def forward(self, feats: list[torch.Tensor], ids: list[torch.Tensor]) -> list[torch.Tensor]:
        """Each (B, C, H, W) feature map at positions ids[l] (indices into H*W) -> (B * len(ids[l]), nc), unit rows."""
        out = []
        for feat, idx, mlp in zip(feats, ids, self.mlps, strict=True):
            flat = feat.permute(0, 2, 3, 1).flatten(1, 2)          # (B, H*W, C)
            sample = flat[:, idx, :].flatten(0, 1)                 # (B * P, C)
            z = mlp(sample)
            out.append(z / (z.pow(2).sum(1, keepdim=True).pow(0.5) + 1e-7))  # unit rows, as the authors' Normalize
        return out


def patch_ids(feats: list[torch.Tensor], num_patches: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Random positions per tapped layer: the first num_patches of a permutation of its H*W positions."""
    return [torch.randperm(f.shape[2] * f.shape[3], generator=generator)[:num_patches].to(f.device) for f in feats]


def patch_nce(q: torch.Tensor, k: torch.Tensor, batch: int, tau: float) -> torch.Tensor:
    """Per query patch, the cross-entropy of picking its own key among the keys of its image (Eq. 3).

    q, k: (batch * P, C) unit rows (P patches of each image, image-major). Logits: the positive q_i . k_i,
    and the negatives q_i . k_j for the other j of the same image; the self-pair j = i among the negatives
    is masked to -10 as in the authors' code (exp(-10 / tau) ~ 0). k carries no gradient (detached)."""
    k = k.detach()
    n, c = q.shape
    positive = torch.bmm(q.view(n, 1, c), k.view(n, c, 1)).view(n, 1)  # (n, 1), as a product: the authors' rounding
    qb, kb = q.view(batch, -1, c), k.view(batch, -1, c)
    negatives = torch.bmm(qb, kb.transpose(1, 2))                      # (batch, P, P)
    eye = torch.eye(qb.shape[1], dtype=torch.bool, device=q.device)[None]
    negatives = negatives.masked_fill(eye, -10.0).view(n, -1)
    logits = torch.cat([positive, negatives], dim=1) / tau
    return F.cross_entropy(logits, torch.zeros(n, dtype=torch.long, device=q.device), reduction="none")
