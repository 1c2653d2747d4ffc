"""Every metric of the evaluate stage, defined once: name -> Metric (its keys with direction and
role, its function, its protocol). evaluate, the study tables and the baselines read keys, arrows and
"best" from here."""

from __future__ import annotations

from dataclasses import replace

from pipeline.metrics.base import Key, Metric
from pipeline.metrics.classification import DOMAIN_ACC
from pipeline.metrics.fcn import FCN
from pipeline.metrics.fidelity import FID_KID
from pipeline.metrics.keys import MetricKey
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

KEYS: dict[MetricKey, Key] = {k.key: k for m in METRICS.values() for k in m.keys}
HEADLINE: list[MetricKey] = [k.key for k in KEYS.values() if k.headline]  # the study tables' columns
SUMMARY: list[MetricKey] = [k.key for k in KEYS.values() if k.summary]  # paths.metrics, the saved MLflow view


def _templates() -> dict[tuple[str, str | None], Key]:
    """(metric, statistic) -> the first key declared for it, in a two-domain model's first route (AtoB) or
    domain (A): the declaration that keys of other routes, of domains and means over routes share."""
    out: dict[tuple[str, str | None], Key] = {}
    for k in KEYS.values():
        out.setdefault((k.key.metric, k.key.statistic), k)
    return out


TEMPLATES = _templates()


def template(k: MetricKey) -> MetricKey:
    """The declared key a key of any route stands for: fid_CtoD and fid_mean -> fid_AtoB, and a multi-domain
    evaluation's per-domain upper bound fcn_real_C_class_iou -> fcn_real_class_iou."""
    if (k.metric, k.statistic) not in TEMPLATES:
        raise KeyError(f"{k} is not a registered metric key (pipeline/metrics/registry.py)")
    return TEMPLATES[k.metric, k.statistic].key


def registered(text: str) -> bool:
    """Whether a column name (a key of metrics.json) is a registered metric key of any route, domain or mean."""
    try:
        template(MetricKey.parse(text))
    except (KeyError, ValueError):
        return False
    return True


def key(k: MetricKey) -> Key:
    """The declaration of `k`: a declared key, or one of another route, or a mean over routes, which shares
    its template's direction and role (a mean is in the summary where its template is; a single route of a
    multi-domain evaluation is not)."""
    if k in KEYS:
        return KEYS[k]
    base = KEYS[template(k)]
    in_summary = base.summary if base.mean_summary is None else base.mean_summary
    return replace(base, key=k, summary=in_summary and k.is_mean, headline=base.headline and k.is_mean)


def arrow(k: MetricKey) -> str:
    """↑ where higher is better, ↓ where lower is, nothing for a spread or a reference level."""
    return {"higher": "↑", "lower": "↓", None: ""}[key(k).better]
