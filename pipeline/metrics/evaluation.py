"""One evaluation: every registered metric on one Context, and the files that report it.

    metrics.json    flat {key: number or "unavailable: <reason>"} for `dvc metrics show/diff`
    protocol.json   {key: its protocol (extractor or segmenter, weights, resolution, counts)}
    per_image.csv   per-image values of the metrics that have them
    grid.png        input | translation | real target, per direction
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np
import torch

from pipeline.data.datasets import grid, to_unit
from pipeline.io import atomic_dir, save_png, write_json
from pipeline.metrics.base import Result
from pipeline.metrics.context import Context, source_domain, target_domain
from pipeline.metrics.registry import METRICS

log = logging.getLogger("pipeline")
UNAVAILABLE = "unavailable: "


def compute(ctx: Context) -> list[Result]:
    """Every metric of the registry; a key a metric did not declare is a bug, stopped here."""
    results: list[Result] = []
    for name, metric in METRICS.items():
        log.info("metric %s", name)
        got = metric.fn(ctx)
        declared = {k.name for k in metric.keys}
        stray = [r.key for r in got if r.key not in declared]
        if stray:
            raise AssertionError(f"metric {name} wrote undeclared key(s) {stray}; declare them in its Metric")
        results += got
    return results


def flat_metrics(results: list[Result]) -> dict:
    return {r.key: (r.value if r.reason is None else UNAVAILABLE + r.reason) for r in results}


def protocols(results: list[Result]) -> dict:
    return {r.key: {**r.protocol, **({"unavailable": r.reason} if r.reason else {})} for r in results}


def per_image_csv(results: list[Result]) -> str:
    columns = [r.key for r in results if r.per_image]
    names = sorted({n for r in results for n in r.per_image})
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", *columns])
    for n in names:
        w.writerow([n, *(next(r.per_image.get(n, "") for r in results if r.key == c) for c in columns)])
    return buf.getvalue()


def sample_grid(ctx: Context, k: int = 6) -> np.ndarray:
    """Rows: input | translation | ground truth (or the real target domain) per direction."""
    rows = []
    for r in ctx.directions():
        src, fake, tgt = (to_unit(t[:k]) for t in (ctx.real(source_domain(r)), ctx.fake(r), ctx.real(target_domain(r))))
        rows += [torch.stack(triple) for triple in zip(src, fake, tgt, strict=True)]
    return grid(rows)


def log_unavailable(results: list[Result]) -> None:
    reasons: dict[str, list[str]] = {}
    for r in results:
        if r.reason:
            reasons.setdefault(r.reason, []).append(r.key)
    for reason, keys in reasons.items():
        log.warning("unavailable: %s: %s", ", ".join(keys), reason)


def write_reports(ctx: Context, results: list[Result], metrics_path: str | Path, reports: str | Path) -> dict:
    """metrics.json and the folder of protocol.json, per_image.csv and grid.png; returns the metrics."""
    metrics = flat_metrics(results)
    write_json(metrics_path, metrics)
    with atomic_dir(reports) as tmp:
        write_json(tmp / "protocol.json", protocols(results))
        (tmp / "per_image.csv").write_text(per_image_csv(results))
        save_png(tmp / "grid.png", sample_grid(ctx))
    return metrics
