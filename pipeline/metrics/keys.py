"""The name of one number of an evaluation: a metric, where it was measured, which statistic.

    MetricKey("fid", AtoB)                      fid_AtoB
    MetricKey("kid", AtoB, "std")               kid_AtoB_std          (the spread of kid_AtoB)
    MetricKey("fcn", AtoB, "class_iou")         fcn_AtoB_class_iou
    MetricKey("fid", MEAN)                      fid_mean              (the mean over a multi-domain model's routes)
    MetricKey("cycle_l1", "A")                  cycle_l1_A            (a domain: A's reconstructions)
    MetricKey("fcn_real", "C", "class_iou")     fcn_real_C_class_iou  (the segmenter on real photos of C)
    MetricKey("fcn_real", None, "class_iou")    fcn_real_class_iou    (pooled over the photo domains)
    MetricKey("domain_acc_real")                domain_acc_real

Inside the code a key is a MetricKey; its string (str(key), `format`) is what metrics.json, protocol.json,
intervals.json, per_image.csv, dvc metrics and MLflow (eval/<key>) show, and `parse` reads it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Union

from pipeline.domains import LETTERS, Route

MEAN = "mean"  # a key's place for the mean over the routes of a multi-domain evaluation
# What the last part of a key may name: FCN-score's three scores, KID's standard deviation over subsets,
# and what LPIPS compares a translation with (its input, the ground truth)
STATISTICS = ("pixel_acc", "class_acc", "class_iou", "std", "input", "truth")
_ROUTE = re.compile(r"[A-H]to[A-H](?:to[A-H])?")

Where = Union[Route, str, None]  # a Route, MEAN, a domain letter, or nothing


def _where(token: str) -> Where | None:
    """The place a part of a key names, or None when it names none."""
    if token == MEAN or (len(token) == 1 and token in LETTERS):
        return token
    if _ROUTE.fullmatch(token):
        return Route.parse(token)
    return None


@dataclass(frozen=True)
class MetricKey:
    metric: str
    route: Where = None
    statistic: str | None = None

    def __post_init__(self) -> None:
        parts = self.metric.split("_")
        if not self.metric or any(not p or _where(p) is not None for p in parts):
            raise ValueError(f"metric name {self.metric!r}: snake_case words, none of them a route, a domain letter or {MEAN!r}")
        if isinstance(self.route, str) and _where(self.route) is None:
            raise ValueError(f"key {self.metric}: {self.route!r} is not {MEAN!r} or a domain letter ({LETTERS})")
        if self.statistic is not None and self.statistic not in STATISTICS:
            raise ValueError(f"key {self.metric}: statistic {self.statistic!r} is not one of {', '.join(STATISTICS)}")

    def __str__(self) -> str:
        return "_".join(str(p) for p in (self.metric, self.route, self.statistic) if p is not None)

    format = __str__

    @classmethod
    def parse(cls, text: str) -> MetricKey:
        """The key a string of metrics.json (or an MLflow eval/ metric without its prefix) names."""
        parts = text.split("_") if isinstance(text, str) else []
        try:
            for i, part in enumerate(parts[1:], 1):
                where = _where(part)
                if where is not None:
                    return cls("_".join(parts[:i]), where, "_".join(parts[i + 1:]) or None)
            statistic = next((s for s in STATISTICS if text.endswith("_" + s)), None)
            return cls(text[:-len(statistic) - 1] if statistic else text, None, statistic)
        except ValueError as e:
            raise ValueError(f"metric key {text!r}: {e}; keys are <metric>[_<route>|_{MEAN}|_<domain>][_<statistic>], "
                             f"e.g. fid_AtoB, kid_AtoB_std, fcn_real_C_class_iou") from None

    @property
    def is_mean(self) -> bool:
        """A mean over routes (fid_mean, fcn_mean_class_iou)."""
        return self.route == MEAN

    @property
    def of_route(self) -> Route | None:
        """The translation route the key measures (None for a mean, a domain or a model-free number)."""
        return self.route if isinstance(self.route, Route) else None

    def at(self, route: Where) -> MetricKey:
        """The same metric and statistic at another place: fid_AtoB.at(MEAN) -> fid_mean."""
        return replace(self, route=route)
