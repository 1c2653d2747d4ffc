"""The names of the networks, normalisations, initialisations and GAN objectives: the choices of the
params knobs that select them. torch-free, so that loading params.yaml imports no torch; the registries
that build them (pipeline/models/networks.py, losses.py) are keyed by these names (tests/test_networks.py
keeps the two equal)."""

from __future__ import annotations

UNET_LEVELS = {"unet_32": 5, "unet_64": 6, "unet_128": 7, "unet_256": 8}  # U-Net name -> num_downs
GENERATORS = ("resnet_9blocks", "resnet_6blocks", *UNET_LEVELS)
DISCRIMINATORS = ("basic", "n_layers", "pixel", "basic_multi")
NORMS = ("instance", "batch", "none")
INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal", "default")
GAN_MODES = ("lsgan", "vanilla", "wgangp")

# BicycleGAN: G(A, z), where z joins the U-Net (the input only, or every encoder level), and E(B) -> z
LATENT_GENERATORS = tuple(UNET_LEVELS)
WHERE_ADD = ("input", "all")
ENCODERS = ("resnet_64", "resnet_128", "resnet_256")

# StarGAN: G(x, c) and D(x) -> (real/fake map, domain logits)
CONDITIONAL_GENERATORS = ("stargan_6blocks",)
CLASSIFYING_DISCRIMINATORS = ("stargan",)
