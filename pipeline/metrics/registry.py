"""Every metric of the evaluate stage, defined once: name -> Metric (its keys with direction and
role, its function, its protocol). evaluate, the study tables and the baselines read keys, arrows and
"best" from here."""

from __future__ import annotations

import re
from dataclasses import replace

from pipeline.metrics.base import MEAN, ROUTE, Key, Metric
from pipeline.metrics.classification import DOMAIN_ACC
from pipeline.metrics.fcn import FCN
from pipeline.metrics.fidelity import FID_KID
from pipeline.metrics.multimodal import DIVERSITY, LATENT
from pipeline.metrics.perceptual import LPIPS
from pipeline.metrics.pixel import CYCLE, PAIRED

METRICS: dict[str, Metric] = {
    "fid_kid": FID_KID,
    "lpips": LPIPS,
    "fcn": FCN,
    "domain_acc": DOMAIN_ACC,
    "paired": PAIRED,
    "cycle": CYCLE,
    "diversity": DIVERSITY,
    "latent": LATENT,
}

KEYS: dict[str, Key] = {k.name: k for m in METRICS.values() for k in m.keys}
HEADLINE: list[str] = [k.name for k in KEYS.values() if k.headline]  # the study tables' columns
SUMMARY: list[str] = [k.name for k in KEYS.values() if k.summary]  # paths.metrics, the saved MLflow view


def template(name: str) -> str:
    """The declared key a key of any route stands for: fid_CtoD and fid_mean -> fid_AtoB, and a multi-domain
    evaluation's per-domain upper bound fcn_real_C_class_iou -> fcn_real_class_iou."""
    name = re.sub(r"^fcn_real_[A-H](?=_)", "fcn_real", re.sub(r"^cycle_l1_[A-H]$", "cycle_l1_A", name))
    return ROUTE.sub("AtoB", re.sub(rf"(?<=_){MEAN}(?=_|$)", "AtoB", name))


def is_mean(name: str) -> bool:
    """A key of a mean over routes (fid_mean, fcn_mean_class_iou)."""
    return re.search(rf"(?<=_){MEAN}(?=_|$)", name) is not None


def key(name: str) -> Key:
    """The Key of `name`: a declared key, or one of another route, or a mean over routes, which shares its
    template's direction and role (a mean is in the summary where its template is; a single route of a
    multi-domain evaluation is not)."""
    if name in KEYS:
        return KEYS[name]
    base = KEYS.get(template(name))
    if base is None:
        raise KeyError(f"{name!r} is not a registered metric key (pipeline/metrics/registry.py)")
    mean = is_mean(name)
    in_summary = base.summary if base.mean_summary is None else base.mean_summary
    return replace(base, name=name, summary=in_summary and mean, headline=base.headline and mean)


def arrow(name: str) -> str:
    """↑ where higher is better, ↓ where lower is, nothing for a spread or a reference level."""
    return {"higher": "↑", "lower": "↓", None: ""}[key(name).better]
