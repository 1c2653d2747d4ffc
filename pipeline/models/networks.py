"""Generators, discriminators and encoders of the models, with explicit constructors (StarGAN's own G and D in
pipeline/models/stargan/networks.py; their names, the params' choices, in names.py).

Architectures follow the papers and the authors' code (junyanz/pytorch-CycleGAN-and-pix2pix,
models/networks.py):
- ResNet generator (Johnson et al. 2016), as CycleGAN appendix 7.2: c7s1-64, d128, d256,
  n x R256, u128, u64, c7s1-3; reflection padding; 6 blocks for 128px, 9 for 256px.
- U-Net generator (pix2pix): encoder-decoder with skips between mirrored layers; `num_downs`
  halvings, so the input side must be divisible by 2**num_downs.
- PatchGAN discriminator: n_layers=3 is the 70x70 PatchGAN (receptive field 70 pixels);
  the pixel variant is the 1x1 PatchGAN.

Registries are plain dicts of constructors; `build_*` returns the module and the exact spec (name
and keyword arguments) that a checkpoint stores so the network can be rebuilt from the file alone.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import nn

from pipeline.models.cut.networks import CUTDiscriminator, CUTGenerator, PatchSampleF
from pipeline.models.layers import ResnetBlock, norm_layer, tile, use_bias
from pipeline.models.names import INIT_TYPES, UNET_LEVELS, WHERE_ADD
from pipeline.models.stargan.networks import StarGANDiscriminator, StarGANGenerator


class ResnetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ngf: int, norm: str, dropout: bool, n_blocks: int):
        super().__init__()
        bias = use_bias(norm)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7, bias=bias),
                                   norm_layer(norm, ngf), nn.ReLU(True)]
        for i in range(2):  # d128, d256: stride-2 downsampling
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=bias), norm_layer(norm, 2 * c), nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4, norm, dropout) for _ in range(n_blocks)]
        for i in (2, 1):  # u128, u64: fractionally strided convolutions
            c = ngf * 2 ** i
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1, bias=bias),
                       norm_layer(norm, c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.stride = 4  # input sides must be multiples of this (two stride-2 convs, undone by two up convs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, and the skip concatenation."""

    def __init__(self, outer: int, inner: int, norm: str, *, inner_block: nn.Module | None = None,
                 in_channels: int | None = None, outermost: bool = False, dropout: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = use_bias(norm)
        in_channels = outer if in_channels is None else in_channels
        down = nn.Conv2d(in_channels, inner, 4, stride=2, padding=1, bias=bias)
        up_in = inner if inner_block is None else inner * 2  # skip doubles the channels, except innermost
        if outermost:
            layers = [down, inner_block, nn.ReLU(True), nn.ConvTranspose2d(up_in, outer, 4, 2, 1), nn.Tanh()]
        elif inner_block is None:  # innermost: no norm at the 1x1 bottleneck
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True),
                      nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=bias), norm_layer(norm, outer)]
        else:
            layers = [nn.LeakyReLU(0.2, True), down, norm_layer(norm, inner), inner_block, nn.ReLU(True),
                      nn.ConvTranspose2d(up_in, outer, 4, 2, 1, bias=bias), norm_layer(norm, outer)]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, ngf: int, norm: str, dropout: bool, num_downs: int):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs={num_downs}: the U-Net needs at least 5 levels")
        block = UnetBlock(ngf * 8, ngf * 8, norm)  # innermost
        for _ in range(num_downs - 5):  # the ngf*8 middle levels carry pix2pix's dropout noise
            block = UnetBlock(ngf * 8, ngf * 8, norm, inner_block=block, dropout=dropout)
        for mult in (4, 2, 1):
            block = UnetBlock(ngf * mult, ngf * mult * 2, norm, inner_block=block)
        self.model = UnetBlock(out_channels, ngf, norm, inner_block=block, in_channels=in_channels, outermost=True)
        self.num_downs = num_downs
        self.stride = 2 ** num_downs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = 2 ** self.num_downs
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"U-Net with {self.num_downs} levels needs sides divisible by {side}, got {tuple(x.shape[-2:])}")
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN: classifies overlapping patches as real or fake; n_layers=3 gives 70x70 patches."""

    def __init__(self, in_channels: int, ndf: int, norm: str, n_layers: int):
        super().__init__()
        bias = use_bias(norm)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last of these keeps the resolution
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                       norm_layer(norm, ndf * mult), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))  # one logit per patch
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class MultiScaleDiscriminator(nn.Module):
    """PatchGANs at num_D scales (BicycleGAN's D_NLayersMulti, 'basic_256_multi'): scale i sees the
    image average-pooled i times (3x3, stride 2, padding uncounted) and has ndf / 2^i filters. Returns
    one prediction map per scale; the GAN losses sum over them (pipeline/models/losses.py)."""

    def __init__(self, in_channels: int, ndf: int, norm: str, n_layers: int, num_D: int):
        super().__init__()
        self.scales = nn.ModuleList(NLayerDiscriminator(in_channels, max(1, round(ndf / 2 ** i)), norm, n_layers)
                                    for i in range(num_D))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, d in enumerate(self.scales):
            out.append(d(x))
            if i + 1 < len(self.scales):
                x = self.down(x)
        return out


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: judges each pixel's colour statistics alone."""

    def __init__(self, in_channels: int, ndf: int, norm: str):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(in_channels, ndf, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=use_bias(norm)), norm_layer(norm, ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LatentUnetGenerator(nn.Module):
    """BicycleGAN's generator G(A, z) (Zhu et al. 2017b, Sec. 4; authors' G_Unet_add_input and
    G_Unet_add_all): the pix2pix U-Net with the latent code z tiled and concatenated to the input
    (where_add="input") or to the input of every encoder level (where_add="all"). The skip
    connections carry the features without z, as in the authors' code.

    Level i halves the resolution: d_i = down_i([d_{i-1}, z]); u_i = up_i([d_i, u_{i+1}]).
    """

    def __init__(self, in_channels: int, out_channels: int, ngf: int, norm: str, dropout: bool, num_downs: int,
                 nz: int, where_add: str):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs={num_downs}: the U-Net needs at least 5 levels")
        if where_add not in WHERE_ADD:
            raise ValueError(f"where_add={where_add!r}; valid: {', '.join(WHERE_ADD)}")
        self.nz, self.where_add, self.num_downs = nz, where_add, num_downs
        self.stride = 2 ** num_downs
        bias = use_bias(norm)
        width = [ngf * min(2 ** i, 8) for i in range(num_downs)]  # channels after level i
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        for i in range(num_downs):
            c_in = (in_channels if i == 0 else width[i - 1]) + (nz if i == 0 or where_add == "all" else 0)
            innermost = i == num_downs - 1
            down: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            down.append(nn.Conv2d(c_in, width[i], 4, stride=2, padding=1, bias=bias))
            if 0 < i < num_downs - 1:  # no norm on the outermost input and at the 1x1 bottleneck
                down.append(norm_layer(norm, width[i]))
            self.downs.append(nn.Sequential(*down))
            up_in = width[i] if innermost else 2 * width[i]
            if i == 0:
                up = [nn.ReLU(True), nn.ConvTranspose2d(up_in, out_channels, 4, 2, 1), nn.Tanh()]
            else:
                up = [nn.ReLU(True), nn.ConvTranspose2d(up_in, width[i - 1], 4, 2, 1, bias=bias), norm_layer(norm, width[i - 1])]
                if dropout and 4 <= i < num_downs - 1:  # pix2pix's dropout sits on the ngf*8 middle levels
                    up.append(nn.Dropout(0.5))
            self.ups.append(nn.Sequential(*up))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        side = 2 ** self.num_downs
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"U-Net with {self.num_downs} levels needs sides divisible by {side}, got {tuple(x.shape[-2:])}")
        skips, h = [], x
        for i, down in enumerate(self.downs):
            if i == 0 or self.where_add == "all":
                h = torch.cat([h, tile(z, h)], 1)
            h = down(h)
            skips.append(h)
        h = self.ups[-1](skips[-1])
        for i in range(self.num_downs - 2, -1, -1):
            h = self.ups[i](torch.cat([skips[i], h], 1))
        return h


class EncoderBlock(nn.Module):
    """Residual block that halves the resolution (authors' BasicBlock of E_ResNet): norm, LeakyReLU,
    3x3 conv, norm, LeakyReLU, 3x3 conv + 2x2 mean pool; shortcut: mean pool + 1x1 conv."""

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__()
        self.conv = nn.Sequential(
            norm_layer(norm, c_in), nn.LeakyReLU(0.2, True), nn.Conv2d(c_in, c_in, 3, padding=1),
            norm_layer(norm, c_in), nn.LeakyReLU(0.2, True), nn.Conv2d(c_in, c_out, 3, padding=1), nn.AvgPool2d(2))
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(c_in, c_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class ResnetEncoder(nn.Module):
    """BicycleGAN's encoder E(B) -> (mu, logvar) of q(z|B) (authors' E_ResNet, vaeLike): a strided
    4x4 conv, n_blocks - 1 halving residual blocks, global average pooling, two linear heads.
    The authors pool with a fixed 8x8 window (256px: 5 blocks, 128px: 4); a global pool is the
    same there and lets every image size work."""

    def __init__(self, in_channels: int, nz: int, nef: int, norm: str, n_blocks: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, nef, 4, stride=2, padding=1)]
        for n in range(1, n_blocks):
            layers.append(EncoderBlock(nef * min(n, 4), nef * min(n + 1, 4), norm))
        layers += [nn.LeakyReLU(0.2, True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        width = nef * min(n_blocks, 4)
        self.mu, self.logvar = nn.Linear(width, nz), nn.Linear(width, nz)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        return self.mu(h), self.logvar(h)


GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "resnet_9blocks": functools.partial(ResnetGenerator, n_blocks=9),
    "resnet_6blocks": functools.partial(ResnetGenerator, n_blocks=6),
    **{name: functools.partial(UnetGenerator, num_downs=n) for name, n in UNET_LEVELS.items()},
}

# BicycleGAN: G(A, z) and E(B); kwargs add nz and where_add (generators), nz and nef (encoders).
LATENT_GENERATORS: dict[str, Callable[..., nn.Module]] = {
    name: functools.partial(LatentUnetGenerator, num_downs=n) for name, n in UNET_LEVELS.items()}
ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "resnet_64": functools.partial(ResnetEncoder, n_blocks=3),   # 64px -> 8x8 before pooling
    "resnet_128": functools.partial(ResnetEncoder, n_blocks=4),  # the authors' choice at 128px
    "resnet_256": functools.partial(ResnetEncoder, n_blocks=5),  # and at 256px
}

# StarGAN: G(x, c) and D(x) -> (real/fake map, domain logits); kwargs add n_domains (and image_size for D).
CONDITIONAL_GENERATORS: dict[str, Callable[..., nn.Module]] = {
    "stargan_6blocks": functools.partial(StarGANGenerator, n_blocks=6),  # the paper's, at 128px
}
CLASSIFYING_DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {"stargan": StarGANDiscriminator}

DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {
    "basic": functools.partial(NLayerDiscriminator, n_layers=3),  # 70x70 PatchGAN
    "n_layers": NLayerDiscriminator,
    "pixel": PixelDiscriminator,
    # BicycleGAN's default D and D2 (the authors' basic_256_multi): the 70x70 PatchGAN at two scales
    "basic_multi": functools.partial(MultiScaleDiscriminator, n_layers=3, num_D=2),
}


def init_weights(net: nn.Module, init_type: str, gain: float) -> nn.Module:
    """Initialise conv weights as the papers do: normal(0, 0.02) by default; biases to 0;
    BatchNorm scale ~ normal(1, gain). "default" keeps PyTorch's own initialisation (StarGAN's authors
    call no initialisation)."""
    if init_type == "default":
        return net
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown init_type {init_type!r}; valid: {', '.join(INIT_TYPES)}")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net



def _lookup(registry: dict, kind: str, name: str) -> Callable[..., nn.Module]:
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(registry)}")
    return registry[name]


ROLES: dict[str, tuple[str, dict[str, Callable[..., nn.Module]]]] = {
    "generator": ("generator", GENERATORS),
    "discriminator": ("discriminator", DISCRIMINATORS),
    "latent_generator": ("latent generator", LATENT_GENERATORS),
    "encoder": ("encoder", ENCODERS),
    "conditional_generator": ("conditional generator", CONDITIONAL_GENERATORS),
    "classifying_discriminator": ("classifying discriminator", CLASSIFYING_DISCRIMINATORS),
    "cut_generator": ("CUT generator", {"resnet_antialiased": CUTGenerator}),
    "cut_discriminator": ("CUT discriminator", {"basic_antialiased": CUTDiscriminator}),
    "patch_sampler": ("patch sampler", {"mlp_sample": PatchSampleF}),
}


def build_net(role: str, name: str, **kwargs) -> nn.Module:
    """The network `name` of `role` (a key of ROLES) from its registry, with its constructor kwargs."""
    kind, registry = ROLES[role]
    return _lookup(registry, kind, name)(**kwargs)


def build_generator(name: str, **kwargs) -> nn.Module:
    """kwargs: in_channels, out_channels, ngf, norm, dropout (see GENERATORS)."""
    return build_net("generator", name, **kwargs)


def build_discriminator(name: str, **kwargs) -> nn.Module:
    """kwargs: in_channels, ndf, norm, and n_layers for 'n_layers' (see DISCRIMINATORS)."""
    return build_net("discriminator", name, **kwargs)


def build(spec: dict) -> nn.Module:
    """Rebuild a network from the spec a checkpoint stores: {'role', 'name', 'kwargs'}."""
    return build_net(spec["role"], spec["name"], **spec["kwargs"])
