import pytest
import torch

from pipeline.models import networks
from pipeline.models.networks import GENERATORS, build_discriminator, build_generator, init_weights


@pytest.mark.parametrize("name", list(GENERATORS))
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_every_generator_maps_an_image_to_an_image(name, norm):
    side = 2 ** networks.UNET_LEVELS.get(name, 2) * 2 if name.startswith("unet") else 32
    g = build_generator(name, in_channels=3, out_channels=3, ngf=4, norm=norm, dropout=True)
    x = torch.randn(2, 3, side, side)
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0  # tanh output, the image range


@pytest.mark.parametrize("name, kwargs, out_side", [
    ("basic", {}, 6),               # 64 -> 32 -> 16 -> 8 -> 7 -> 6
    ("n_layers", {"n_layers": 1}, 30),
    ("pixel", {}, 64),
])
def test_every_discriminator_gives_a_map_of_patch_logits(name, kwargs, out_side):
    d = build_discriminator(name, in_channels=6, ndf=4, norm="instance", **kwargs)
    assert d(torch.randn(2, 6, 64, 64)).shape == (2, 1, out_side, out_side)


def test_basic_patchgan_sees_70x70_patches():
    """The receptive field of one output logit of the 3-layer PatchGAN is 70 pixels (pix2pix)."""
    d = build_discriminator("basic", in_channels=1, ndf=2, norm="none")
    init_weights(d, "normal", 0.02)
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    out = d(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70


def test_resnet_block_counts_match_their_names():
    for name, n in (("resnet_6blocks", 6), ("resnet_9blocks", 9)):
        g = build_generator(name, in_channels=3, out_channels=3, ngf=4, norm="instance", dropout=False)
        assert sum(isinstance(m, networks.ResnetBlock) for m in g.modules()) == n


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown generator 'resnet_7blocks'; valid: resnet_9blocks, resnet_6blocks"):
        build_generator("resnet_7blocks", in_channels=3, out_channels=3, ngf=4, norm="instance", dropout=False)
    with pytest.raises(ValueError, match="unknown discriminator 'huge'; valid: basic, n_layers, pixel, basic_multi"):
        build_discriminator("huge", in_channels=3, ndf=4, norm="instance")


def test_unet_rejects_a_side_it_cannot_halve():
    g = build_generator("unet_64", in_channels=3, out_channels=3, ngf=2, norm="batch", dropout=False)
    with pytest.raises(ValueError, match="divisible by 64"):
        g(torch.randn(1, 3, 48, 48))


@pytest.mark.parametrize("init_type", networks.INIT_TYPES)
def test_init_types(init_type):
    g = build_generator("resnet_6blocks", in_channels=3, out_channels=3, ngf=8, norm="batch", dropout=False)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    init_weights(g, init_type, 0.02)
    if init_type == "default":  # PyTorch's own initialisation, untouched (StarGAN's authors call none)
        assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())
        return
    convs = [m for m in g.modules() if isinstance(m, torch.nn.Conv2d)]
    if init_type == "normal":  # the papers' N(0, 0.02)
        w = torch.cat([c.weight.detach().flatten() for c in convs])
        assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002
    assert all(c.bias is None or not c.bias.any() for c in convs)
    bn = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(abs(float(m.weight.detach().mean()) - 1) < 0.05 for m in bn)


def test_conv_bias_only_without_batchnorm():
    with_bn = build_generator("resnet_6blocks", in_channels=3, out_channels=3, ngf=4, norm="batch", dropout=False)
    with_in = build_generator("resnet_6blocks", in_channels=3, out_channels=3, ngf=4, norm="instance", dropout=False)
    assert with_bn.model[1].bias is None and with_in.model[1].bias is not None


def test_the_torch_registries_hold_exactly_the_names_params_choose_from():
    """pipeline/models/names.py lists the names torch-free (loading params.yaml imports no torch); each
    registry that builds them is keyed by the same names."""
    from pipeline.models import layers, losses, names

    assert tuple(networks.GENERATORS) == names.GENERATORS
    assert tuple(networks.DISCRIMINATORS) == names.DISCRIMINATORS
    assert tuple(networks.LATENT_GENERATORS) == names.LATENT_GENERATORS
    assert tuple(networks.ENCODERS) == names.ENCODERS
    assert tuple(networks.CONDITIONAL_GENERATORS) == names.CONDITIONAL_GENERATORS
    assert tuple(networks.CLASSIFYING_DISCRIMINATORS) == names.CLASSIFYING_DISCRIMINATORS
    assert tuple(layers.NORMS) == names.NORMS
    assert losses.GAN_MODES == names.GAN_MODES
    for init in names.INIT_TYPES:  # every name initialises, and no other does
        init_weights(build_generator("resnet_6blocks", in_channels=3, out_channels=3, ngf=4, norm="batch",
                                     dropout=False), init, 0.02)
    with pytest.raises(ValueError, match="unknown init_type"):
        init_weights(build_generator("resnet_6blocks", in_channels=3, out_channels=3, ngf=4, norm="none",
                                     dropout=False), "uniform", 0.02)
