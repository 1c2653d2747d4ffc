"""Every metric of the evaluate stage, defined once: name -> Metric (its keys with direction and
role, its function, its protocol). evaluate, the study tables and the baselines read keys, arrows and
"best" from here."""

from __future__ import annotations

from pipeline.metrics.base import Key, Metric
from pipeline.metrics.fcn import FCN
from pipeline.metrics.fidelity import FID_KID
from pipeline.metrics.multimodal import DIVERSITY, LATENT
from pipeline.metrics.perceptual import LPIPS
from pipeline.metrics.pixel import CYCLE, PAIRED

METRICS: dict[str, Metric] = {
    "fid_kid": FID_KID,
    "lpips": LPIPS,
    "fcn": FCN,
    "paired": PAIRED,
    "cycle": CYCLE,
    "diversity": DIVERSITY,
    "latent": LATENT,
}

KEYS: dict[str, Key] = {k.name: k for m in METRICS.values() for k in m.keys}
HEADLINE: list[str] = [k.name for k in KEYS.values() if k.headline]  # the study tables' columns
SUMMARY: list[str] = [k.name for k in KEYS.values() if k.summary]  # paths.metrics, the saved MLflow view


def key(name: str) -> Key:
    if name not in KEYS:
        raise KeyError(f"{name!r} is not a registered metric key (pipeline/metrics/registry.py)")
    return KEYS[name]


def arrow(name: str) -> str:
    """↑ where higher is better, ↓ where lower is, nothing for a spread or a reference level."""
    return {"higher": "↑", "lower": "↓", None: ""}[key(name).better]
