"""Pixel metrics against a known answer: L1, PSNR and SSIM to the ground truth on paired test sets,
and the cycle reconstruction error of CycleGAN."""

from __future__ import annotations

import torch

from pipeline.domains import TWO_DOMAIN_ROUTES, TWO_DOMAINS, AtoB, test_dir
from pipeline.metrics import math
from pipeline.metrics.base import HIGHER, LOWER, SIGNED_UNIT, UNIT, Key, Metric, Resamplable, Result, unavailable
from pipeline.metrics.context import Context, target_domain
from pipeline.metrics.keys import MetricKey


def paired(ctx: Context) -> list[Result]:
    """L1, PSNR and SSIM of each translation against its ground truth (paired test sets only)."""
    routes = ctx.directions()
    keys = [MetricKey(m, r) for r in routes for m in ("l1", "psnr", "ssim")]
    if not ctx.paired:
        return unavailable(keys, f"the test set of {ctx.manifest['dataset']} is unpaired: no ground truth")
    out = []
    for r in routes:
        x, y = ctx.fake(r).double() / 255, ctx.real(target_domain(r)).double() / 255
        protocol = {"resolution": f"{ctx.size}px", "n": len(x), "range": "[0, 1] RGB", "ground_truth": f"real {target_domain(r)}"}
        for name, fn, extra in (("l1", math.l1_per_image, {}), ("psnr", math.psnr_per_image, {"unit": "dB"}),
                                ("ssim", math.ssim_per_image, {"window": "gaussian 11, sigma 1.5"})):
            v = fn(x, y)
            finite = v[torch.isfinite(v)]
            out.append(Result(MetricKey(name, r), float(finite.mean()) if len(finite) else float("inf"),
                              {**protocol, **extra}, per_image=dict(zip(ctx.names(r), v.tolist(), strict=True)),
                              resamplable=Resamplable.mean(v)))
    return out


def cycle(ctx: Context) -> list[Result]:
    """Cycle reconstruction error L1(F(G(x)), x) and L1(G(F(y)), y), CycleGAN only (routes XtoYtoX)."""
    out = []
    cycles = [r for r in ctx.routes if r.is_cycle and r.back == r.source]
    for route, domain, key in ((r, test_dir(r.source), MetricKey("cycle_l1", r.source)) for r in cycles):
        v = math.l1_per_image(ctx.fake(route).double() / 255, ctx.real(domain).double() / 255)
        out.append(Result(key, float(v.mean()), {"resolution": f"{ctx.size}px", "n": len(v), "range": "[0, 1] RGB"},
                          per_image=dict(zip(ctx.names(route), v.tolist(), strict=True)), resamplable=Resamplable.mean(v)))
    return out


PAIRED = Metric(paired, tuple(Key(MetricKey(m, r), b, headline=r == AtoB and m != "psnr", bounds=bounds)
                              for r in TWO_DOMAIN_ROUTES
                              for m, b, bounds in (("l1", LOWER, UNIT), ("psnr", HIGHER, None), ("ssim", HIGHER, SIGNED_UNIT))),
                protocol="translation vs ground truth, [0, 1] RGB; SSIM with an 11-tap Gaussian window (sigma 1.5)")
CYCLE = Metric(cycle, tuple(Key(MetricKey("cycle_l1", d), LOWER, headline=True, identity_trivial=True, bounds=UNIT)
                            for d in TWO_DOMAINS),
               protocol="L1(F(G(x)), x) and L1(G(F(y)), y), [0, 1] RGB")
