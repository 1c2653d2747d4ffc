"""The shape of a metric: the keys it writes (each with its direction and role), the function that
computes them, and the Result each key gets. metrics/registry.py lists every metric once."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Callable

import numpy as np

from pipeline.metrics import math
from pipeline.metrics.keys import MetricKey

if TYPE_CHECKING:
    from pipeline.metrics.context import Context

HIGHER, LOWER = "higher", "lower"
# Every key is declared in the routes of a two-domain model (domains.TWO_DOMAIN_ROUTES: AtoB, BtoA). A
# multi-domain evaluation (k domains A, B, C, ...) writes the same keys for every route <X>to<Y>, and
# their mean over the routes at keys.MEAN (metrics/registry.py).


@dataclass(frozen=True)
class Key:
    """The declaration of one output key of metrics.json.

    better: which way is better (HIGHER or LOWER), None for a number that is not a score.
    kind: "score" (ranks models), "spread" (the uncertainty of another key), "reference" (a chance
        level shown beside a score), "upper_bound" (the segmenter on real images: model-free).
    headline: a column of the study tables (reports/ablation.md, multimodal.md).
    summary: in the summary metrics file (paths.metrics) that `dvc metrics show/diff` and `dvc exp show`
        print, kept to a few keys so that their tables fit a terminal; every key is in the full file
        (paths.eval_reports/metrics.json) and the MLflow run.
    identity_trivial: the identity mapping scores perfectly by construction (e.g. the cycle error).
    bounds: the range the score cannot leave (accuracies and IoU in [0, 1], SSIM in [-1, 1], an L1 distance of
        [0, 1] RGB images in [0, 1]); an interval of its mean over seeds is cut to it (math.mean_confidence_interval).
    mean_summary: whether its mean over routes (a multi-domain evaluation) is in the summary; None = as
        `summary` (e.g. the classification accuracy: the multi-domain summary only).
    """

    key: MetricKey
    better: str | None
    kind: str = "score"
    headline: bool = False
    summary: bool = False
    identity_trivial: bool = False
    mean_summary: bool | None = None
    bounds: tuple[float, float] | None = None


UNIT, SIGNED_UNIT = (0.0, 1.0), (-1.0, 1.0)  # Key.bounds of a fraction, of a correlation such as SSIM


@dataclass(frozen=True)
class Metric:
    """A family of keys computed together by `fn` from one evaluation Context."""

    fn: Callable[[Context], list[Result]]
    keys: tuple[Key, ...]
    protocol: str  # one line: what is compared with what, by which network


@dataclass
class Result:
    key: MetricKey
    value: float | None
    protocol: dict
    reason: str | None = None  # set when the value could not be computed: why, and what would enable it
    per_image: dict[str, float] = field(default_factory=dict)
    interval: tuple[float, float] | None = None  # 95% bootstrap interval over the test images (evaluation.Bootstrap)
    # the statistic on each bootstrap resample: in memory only, to pair two evaluations of the same test
    # images resample by resample (math.paired_difference_interval, studies/baselines.py)
    replicates: np.ndarray | None = field(default=None, repr=False)
    # what a metric returns for its interval: the value as a statistic to recompute on each bootstrap
    # resample, which the evaluation turns into `interval` and `replicates` (evaluation.Bootstrap.apply)
    resamplable: Resamplable | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Resamplable:
    """A Result's value as a statistic of the test images, which the evaluation recomputes on each of its
    bootstrap resamples (metrics/evaluation.py, Bootstrap) for the interval and the replicates.

    fn: the statistic on every resample at once, fn(*indices) -> (B,) values, one (B, size) index array
        per sample, row b being resample b (math.resample_indices): vectorised over the resamples.
    sizes: the samples' sizes: the translations; FID and KID also the real images (resampled independently).
    point: the value on the full samples, given for a statistic that resampling itself shifts (FID, KID):
        the interval is then moved by the bootstrap's bias estimate (math.percentile_interval).
    method: what the protocol's interval line adds to the bootstrap's description.
    """

    fn: Callable[..., float]
    sizes: tuple[int, ...]
    point: float | None = None
    method: str = ""

    @classmethod
    def mean(cls, values) -> Resamplable | None:
        """The mean of per-image values, non-finite ones (an infinite PSNR) left out of each resample's
        mean (math.resampled_finite_means); None when no value is finite."""
        v = np.asarray(values, dtype=np.float64)
        return cls(partial(math.resampled_finite_means, v), (len(v),)) if np.isfinite(v).any() else None


def unavailable(keys: list[MetricKey], reason: str, protocol: dict | None = None) -> list[Result]:
    return [Result(k, None, protocol or {}, reason) for k in keys]
