"""Metrics of a multimodal model (BicycleGAN, Zhu et al. 2017b): the diversity of its outputs for one
input, and how well its encoder recovers the code an output was made with."""

from __future__ import annotations

import torch

from pipeline.data.datasets import to_unit
from pipeline.domains import AtoB, test_dir
from pipeline.errors import Unavailable
from pipeline.metrics import math, perceptual
from pipeline.metrics.base import HIGHER, LOWER, Key, Metric, Resamplable, Result, unavailable
from pipeline.metrics.context import Context
from pipeline.metrics.keys import MetricKey

# BicycleGAN translates A to B only
DIVERSITY_L1, DIVERSITY_LPIPS = MetricKey("diversity_l1", AtoB), MetricKey("diversity_lpips", AtoB)
LATENT_L1, LATENT_CHANCE = MetricKey("latent_l1", AtoB), MetricKey("latent_chance_l1")


def diversity(ctx: Context) -> list[Result]:
    """Sec. 5.1 of the paper: the mean LPIPS distance between outputs of the same input under different
    random codes. The paper averages 19 random pairs for each of 100 inputs; here every pair of the
    translate.n_samples outputs of every test input. Beside it the same average in pixel space (L1 in
    [0, 1]), which needs no network weights. Models with one output per input (CycleGAN, pix2pix:
    deterministic at test time) have no such keys."""
    spec = ctx.info.get("samples")
    if spec is None:
        return []
    k = spec["n_samples"]
    samples = [ctx.fake(f"{spec['folder']}/{i:02d}") for i in range(k)]
    pairs = math.sample_pairs(k)
    protocol = {"resolution": f"{ctx.size}px", "n_inputs": len(samples[0]), "pairs_per_input": len(pairs),
                "n_pairs": len(pairs) * len(samples[0]), "codes": f"z ~ N(0, I), nz={spec['nz']}, seed {spec['seed']}",
                "input": test_dir(AtoB.source)}
    names = ctx.names(f"{spec['folder']}/00")
    l1 = torch.stack([math.l1_per_image(samples[i].double() / 255, samples[j].double() / 255) for i, j in pairs]).mean(0)
    out = [Result(DIVERSITY_L1, float(l1.mean()), {**protocol, "distance": "mean |a - b|, [0, 1] RGB"},
                  per_image=dict(zip(names, l1.tolist(), strict=True)), resamplable=Resamplable.mean(l1))]
    try:
        e = ctx.params.evaluate
        model, net_protocol = perceptual.load_lpips(e.lpips_net, e.lpips_backbone, ctx.device)
    except Unavailable as err:
        return out + unavailable([DIVERSITY_LPIPS], str(err),
                                 {**protocol, "network": perceptual.network_name(ctx.params.evaluate.lpips_net)})
    bs = ctx.params.evaluate.batch_size
    d = torch.stack([perceptual.lpips_distances(model, to_unit(samples[i]), to_unit(samples[j]), bs, ctx.device)
                     for i, j in pairs]).mean(0)
    return out + [Result(DIVERSITY_LPIPS, float(d.mean()), {**protocol, **net_protocol},
                         per_image=dict(zip(names, d.tolist(), strict=True)), resamplable=Resamplable.mean(d))]


def latent(ctx: Context) -> list[Result]:
    """The latent regression at test time (cLR-GAN cycle z -> G(A, z) -> E -> z): mean L1 between the
    codes and the encoder's means, which the translate stage recorded where G and E are loaded.
    Chance: the same recovered codes against another input's code (no relation to the image); the
    protocol also gives sqrt(2/pi) = 0.798, the error of guessing 0 for every code."""
    codes = ctx.latent
    if codes is None:
        return []
    z, mu = codes["codes"], codes["recovered"]
    protocol = {"method": "mean |mu(E(G(A, z))) - z| over every sample (before 8-bit rounding); chance: the "
                          "same against another input's code", "n": z.shape[0] * z.shape[1],
                "chance_l1": math.latent_l1(mu, math.other_inputs(z)), "zero_guess_l1": math.ZERO_GUESS_L1,
                "resolution": f"{ctx.size}px"}
    return [Result(LATENT_L1, math.latent_l1(mu, z), protocol),
            Result(LATENT_CHANCE, protocol["chance_l1"], protocol)]


DIVERSITY = Metric(diversity, (Key(DIVERSITY_L1, HIGHER, headline=True),
                               Key(DIVERSITY_LPIPS, HIGHER, headline=True, summary=True)),
                   protocol="mean distance between outputs of one input under different random codes, every pair")
LATENT = Metric(latent, (Key(LATENT_L1, LOWER, headline=True),
                         Key(LATENT_CHANCE, None, kind="reference", headline=True)),
                protocol="mean |E(G(A, z)) - z| over every sample, beside the same against another input's code")
