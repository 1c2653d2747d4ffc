"""StarGAN's networks (Choi et al. 2018, appendix Table 4; the authors' model.py): G(x, c) and D with a
domain head. Built by name through pipeline/models/networks.py's registries."""

from __future__ import annotations

import torch
from torch import nn

from pipeline.models.layers import tile


def _stargan_norm(channels: int) -> nn.Module:
    # The authors' InstanceNorm2d(affine=True, track_running_stats=True): their test code never switches G to
    # eval mode, so it always normalises by each image's own statistics; without running statistics, ours
    # does so in both modes.
    return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)


class StarGANResidualBlock(nn.Module):
    """conv3x3 - IN - ReLU - conv3x3 - IN, plus the input (the authors' ResidualBlock)."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), _stargan_norm(dim), nn.ReLU(True),
                                   nn.Conv2d(dim, dim, 3, padding=1, bias=False), _stargan_norm(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class StarGANGenerator(nn.Module):
    """StarGAN's G(x, c) (Choi et al. 2018, Sec. 3 and Table 4 of the appendix; authors' model.Generator): the
    target-domain label c, one-hot over k domains, replicated spatially and concatenated to the image; c7s1-64,
    two stride-2 4x4 down convs, `n_blocks` residual blocks, two stride-2 4x4 transposed convs, c7s1-3, tanh."""

    def __init__(self, in_channels: int, out_channels: int, n_domains: int, ngf: int, n_blocks: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels + n_domains, ngf, 7, padding=3, bias=False),
                                   _stargan_norm(ngf), nn.ReLU(True)]
        c = ngf
        for _ in range(2):
            layers += [nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, bias=False), _stargan_norm(2 * c), nn.ReLU(True)]
            c *= 2
        layers += [StarGANResidualBlock(c) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, stride=2, padding=1, bias=False), _stargan_norm(c // 2),
                       nn.ReLU(True)]
            c //= 2
        layers += [nn.Conv2d(c, out_channels, 7, padding=3, bias=False), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.n_domains = n_domains
        self.stride = 4

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x: images (N, 3, H, W); c: target-domain labels, one-hot (N, k)."""
        return self.model(torch.cat([x, tile(c.to(x.dtype), x)], 1))


class StarGANDiscriminator(nn.Module):
    """StarGAN's D (authors' model.Discriminator): `n_layers` stride-2 4x4 convs with LeakyReLU(0.01) and no
    normalisation, then two heads on the same features: D_src, a 3x3 conv giving a PatchGAN map of real/fake
    scores, and D_cls, a conv over the whole remaining map giving the k domain logits."""

    def __init__(self, in_channels: int, n_domains: int, ndf: int, n_layers: int, image_size: int):
        super().__init__()
        side = image_size // 2 ** n_layers
        if side < 1 or image_size % 2 ** n_layers:
            raise ValueError(f"a {n_layers}-layer StarGAN D needs an image side divisible by {2 ** n_layers}, "
                             f"got {image_size}")
        layers: list[nn.Module] = []
        c_in, c = in_channels, ndf
        for _ in range(n_layers):
            layers += [nn.Conv2d(c_in, c, 4, stride=2, padding=1), nn.LeakyReLU(0.01)]
            c_in, c = c, 2 * c
        self.main = nn.Sequential(*layers)
        self.src = nn.Conv2d(c_in, 1, 3, padding=1, bias=False)           # D_src: real / fake per patch
        self.cls = nn.Conv2d(c_in, n_domains, side, bias=False)           # D_cls: domain logits

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        return self.src(h), self.cls(h).flatten(1)


