"""LPIPS (Zhang et al. 2018) through the `lpips` package: AlexNet features, v0.1 linear heads.

The linear heads ship inside the lpips wheel; the AlexNet backbone is torchvision's ImageNet weights,
normally downloaded on first use. Here they are never downloaded behind the user's back: the file is
taken from params `evaluate.lpips_backbone` or torchvision's cache, and without it LPIPS is reported
unavailable with the exact file and place that would enable it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pipeline.data.datasets import to_unit
from pipeline.errors import ConfigError, Unavailable
from pipeline.metrics.base import LOWER, ROUTES, Key, Metric, Result, unavailable
from pipeline.metrics.context import Context, source_domain, target_domain

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet_Weights.IMAGENET1K_V1
ALEXNET_SHA256_PREFIX = "7be5be79"        # torchvision names files by their hash prefix
NETWORK = "lpips v0.1, AlexNet"


def backbone_path(configured: str | None) -> Path:
    return Path(configured).expanduser() if configured else Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def load_lpips(configured: str | None, device: torch.device):
    """(lpips.LPIPS module, protocol dict). Raises Unavailable without the backbone file."""
    path = backbone_path(configured)
    if configured and not path.exists():
        raise ConfigError(f"evaluate.lpips_backbone={configured} does not exist; fix the path or set it to null")
    if not path.exists():
        raise Unavailable(f"LPIPS needs torchvision's AlexNet weights and there is no network to fetch them: place "
                          f"{ALEXNET_FILE} at {path} (or set evaluate.lpips_backbone)")
    import lpips
    import torchvision

    alexnet = torchvision.models.alexnet(weights=None)
    alexnet.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    # pnet_rand=True: lpips builds the AlexNet without downloading; we fill it from the file.
    model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    for part in (model.net.slice1, model.net.slice2, model.net.slice3, model.net.slice4, model.net.slice5):
        for index, module in part._modules.items():
            module.load_state_dict(alexnet.features[int(index)].state_dict())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    standard = digest.startswith(ALEXNET_SHA256_PREFIX)
    protocol = {"network": NETWORK + ("" if standard else " (NON-STANDARD backbone: numbers not comparable)"),
                "backbone": str(path), "backbone_sha256": digest[:16]}
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
        pairs.append((f"lpips_{r}_input", r, source_domain(r)))
        if ctx.paired:
            pairs.append((f"lpips_{r}_truth", r, target_domain(r)))
    try:
        model, protocol = load_lpips(ctx.params.evaluate.lpips_backbone, ctx.device)
    except Unavailable as e:
        return unavailable([k for k, _, _ in pairs], str(e), {"network": NETWORK})
    out = []
    for key, route, other in pairs:
        fake, ref = to_unit(ctx.fake(route)), to_unit(ctx.real(other))
        d = lpips_distances(model, fake, ref, ctx.params.evaluate.batch_size, ctx.device)
        p = {**protocol, "resolution": f"{ctx.size}px", "n": len(d), "compared_with": f"real {other}"}
        out.append(Result(key, float(d.mean()), p, per_image=dict(zip(ctx.names(route), d.tolist(), strict=True))))
    return out


LPIPS = Metric(lpips_metric, tuple(Key(f"lpips_{r}_{other}", LOWER) for r in ROUTES for other in ("input", "truth")),
               protocol="LPIPS v0.1 AlexNet: translation vs its input, and vs the ground truth on paired test sets")
