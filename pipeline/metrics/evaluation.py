"""One evaluation: every registered metric on one Context, and the files that report it.

    paths.metrics   the summary for `dvc metrics show/diff` and `dvc exp show`: the keys marked `summary`
                    in the registry (FCN class IoU, FID, KID per direction), few enough to fit a terminal
                    Numbers only, as DVC and every tool reading metrics expect: a metric that could not be
                    computed is absent
    paths.eval_reports  metrics.json, protocol.json, intervals.json (95% bootstrap intervals over test images:
                    params evaluate.bootstrap), per_image.csv, grid.png: their format is
                    pipeline/artifacts/eval_reports.py
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from pipeline.artifacts import eval_reports
from pipeline.config import Params
from pipeline.data.datasets import grid, to_unit
from pipeline.domains import Route
from pipeline.io import atomic_dir, save_png, write_json
from pipeline.metrics.base import Resamplable, Result
from pipeline.metrics.context import Context, source_domain, target_domain
from pipeline.metrics.keys import MEAN, MetricKey
from pipeline.metrics.math import percentile_interval, resample_indices
from pipeline.metrics.registry import METRICS, SUMMARY, key

log = logging.getLogger("pipeline")


def compute(ctx: Context) -> list[Result]:
    """Every metric of the registry with its bootstrap interval, and for more than two domains each one's
    mean over the routes; a key a metric did not declare (for any route) is a bug, stopped here."""
    boot = Bootstrap.of(ctx.params)
    results: list[Result] = []
    for name, metric in METRICS.items():
        log.info("metric %s", name)
        got = metric.fn(ctx)
        declared = {(k.key.metric, k.key.statistic) for k in metric.keys}
        stray = [str(r.key) for r in got if (r.key.metric, r.key.statistic) not in declared]
        if stray:
            raise AssertionError(f"metric {name} wrote undeclared key(s) {stray}; declare them in its Metric")
        results += [boot.apply(r) for r in got]
    return results + (route_means(results, ctx.directions()) if ctx.multi_domain else [])


class Bootstrap:
    """The bootstrap of one evaluation: `n` resamples of the test images (params evaluate.bootstrap, 0 = no
    intervals) drawn from `seed` (evaluate.bootstrap_seed) once for each combination of sample sizes, so
    every metric and route on the same test images resamples the same indices, and so does every evaluation
    with the same seed: route means average replicates resample by resample (route_means), and
    studies/baselines.py pairs two evaluations' replicates."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self._indices: dict[tuple[int, ...], tuple[np.ndarray, ...]] = {}

    @classmethod
    def of(cls, params: Params) -> Bootstrap:
        return cls(params.evaluate.bootstrap, params.evaluate.bootstrap_seed)

    def indices(self, sizes: tuple[int, ...]) -> tuple[np.ndarray, ...]:
        if sizes not in self._indices:
            self._indices[sizes] = resample_indices(sizes, self.n, self.seed)
        return self._indices[sizes]

    def resample(self, stat: Resamplable) -> tuple[tuple[float, float], np.ndarray]:
        """The statistic on each resample (the replicates) and their 95% percentile interval, moved by the
        bias estimate where the statistic gives its point."""
        values = np.asarray(stat.fn(*self.indices(stat.sizes)), dtype=np.float64)
        return percentile_interval(values, point=stat.point), values

    def method(self, stat: Resamplable) -> str:
        """The protocol's interval line."""
        return f"95% percentile bootstrap over test images, {self.n} resamples, seed {self.seed}{stat.method}"

    def apply(self, result: Result) -> Result:
        """`result` with its interval, its replicates and the interval's method in its protocol, where it has a
        Resamplable and the bootstrap is on. The Resamplable is dropped: it holds the features or kernel
        matrices it resamples."""
        stat = result.resamplable
        if stat is None:
            return result
        if not self.n:
            return replace(result, resamplable=None)
        interval, values = self.resample(stat)
        return replace(result, protocol={**result.protocol, "interval": self.method(stat)}, interval=interval,
                       replicates=values, resamplable=None)


def route_means(results: list[Result], routes: list[Route]) -> list[Result]:
    """The mean over the model's `routes` of every score computed for each route (fid_AtoB, fid_AtoC, ...
    -> fid_mean; the routes in its protocol's mean_over); its interval from the mean of the routes' bootstrap
    replicates, which resample the same test-image indices (Bootstrap). A score missing or unavailable for
    any route gets no mean: a mean over some routes would not compare with one over all."""
    groups: dict[MetricKey, list[Result]] = {}
    for r in results:
        if r.key.of_route is not None and not r.key.of_route.is_cycle and key(r.key).kind == "score":
            groups.setdefault(r.key.at(MEAN), []).append(r)
    out = []
    for name, members in groups.items():
        if len(members) != len(routes) or any(m.reason is not None or not math.isfinite(m.value) for m in members):
            continue
        reps = [m.replicates for m in members]
        boot = {}
        if all(x is not None for x in reps) and len({len(x) for x in reps}) == 1:
            values = np.mean(reps, axis=0)
            boot = {"interval": percentile_interval(values, point=float(np.mean([m.value for m in members]))),
                    "replicates": values}
        protocol = {**members[0].protocol, "mean_over": [str(m.key.route) for m in members]}
        protocol.pop("reference", None)
        out.append(Result(name, float(np.mean([m.value for m in members])), protocol, **boot))
    return out


def flat_metrics(results: list[Result]) -> dict[str, float]:
    """The computed metrics: finite numbers only (the reasons for the others are in protocols())."""
    return {str(r.key): r.value for r in results if r.reason is None and math.isfinite(r.value)}


def intervals(results: list[Result]) -> dict[str, list[float]]:
    """{key: [low, high]} of the computed metrics that have a finite interval."""
    have = flat_metrics(results)
    return {str(r.key): [lo, hi] for r in results if str(r.key) in have and r.interval is not None
            and all(map(math.isfinite, (lo := r.interval[0], hi := r.interval[1])))}


def protocols(results: list[Result]) -> dict:
    return {str(r.key): {**r.protocol, **({"unavailable": why} if (why := reason(r)) else {})} for r in results}


def reason(r: Result) -> str | None:
    """Why `r` has no number in metrics.json (None when it has one)."""
    if r.reason is None and not math.isfinite(r.value):
        return f"the computation gave {r.value}"
    return r.reason


def per_image_csv(results: list[Result]) -> str:
    columns = [str(r.key) for r in results if r.per_image]
    names = sorted({n for r in results for n in r.per_image})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", *columns])
    for n in names:
        w.writerow([n, *(next(r.per_image.get(n, "") for r in results if str(r.key) == c) for c in columns)])
    return buf.getvalue()


def evaluation_grid(ctx: Context, k: int = 6) -> np.ndarray:
    """Rows: input | translation | ground truth (a paired test set) or a real image of the target
    domain (an unpaired one), per direction (two per direction of a multi-domain model)."""
    k = 2 if ctx.multi_domain else k
    rows = []
    for r in ctx.directions():
        src, fake, tgt = (to_unit(t[:k]) for t in (ctx.real(source_domain(r)), ctx.fake(r), ctx.real(target_domain(r))))
        rows += [torch.stack(triple) for triple in zip(src, fake, tgt, strict=True)]
    return grid(rows, ["input", "translation", "ground truth" if ctx.paired else "real target"])


def log_unavailable(results: list[Result]) -> None:
    for line in eval_reports.unavailable_lines(protocols(results)):
        log.warning("unavailable: %s", line)


def summary(metrics: dict[str, float], multi_domain: bool = False) -> dict[str, float]:
    """The summary keys of metrics.json's {key: number}: a two-domain evaluation's SUMMARY keys, or a
    multi-domain one's means of them."""
    if multi_domain:
        return {k: v for k, v in metrics.items() if (mk := MetricKey.parse(k)).is_mean and key(mk).summary}
    return {k: v for k, v in metrics.items() if MetricKey.parse(k) in SUMMARY}


def write_reports(ctx: Context, results: list[Result], summary_path: str | Path, reports: str | Path) -> dict:
    """The summary file and the folder of metrics.json, protocol.json, per_image.csv and grid.png;
    returns every metric."""
    metrics = flat_metrics(results)
    write_json(summary_path, summary(metrics, ctx.multi_domain))
    with atomic_dir(reports) as tmp:
        write_json(tmp / eval_reports.METRICS, metrics)
        write_json(tmp / eval_reports.PROTOCOL, protocols(results))
        write_json(tmp / eval_reports.INTERVALS, intervals(results))
        (tmp / eval_reports.PER_IMAGE).write_text(per_image_csv(results))
        save_png(tmp / eval_reports.GRID, evaluation_grid(ctx))
    return metrics
