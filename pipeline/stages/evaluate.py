"""Stage `evaluate`: the translations (paths.translated) + the reference features (paths.ref_stats) +
the segmenter (paths.segmenter) -> paths.metrics (the summary for `dvc metrics show/diff` and
`dvc exp show`: FCN class IoU, FID and KID per direction) and paths.eval_reports/{metrics.json (every
metric), protocol.json, intervals.json (95% bootstrap intervals), per_image.csv, grid.png}. The record
stage copies these files into the training's MLflow run, whether this stage ran or DVC skipped it.

Every metric is an entry of pipeline/metrics/registry.py; every number carries its protocol (feature
extractor or segmenter, weights, resolution, sample counts). metrics.json holds numbers only: a metric
that cannot be computed here is absent from it, and the reason is in protocol.json ("unavailable"), in
the log and in the MLflow run (tag eval.unavailable); it is never written as a number.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.artifacts import eval_reports
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.metrics import evaluation
from pipeline.metrics.context import Context
from pipeline.runtime import configure_threads


def run(params: Params) -> dict:
    configure_threads(params.evaluate.num_threads, "evaluate.num_threads")
    ctx = Context(params)
    results = evaluation.compute(ctx)
    evaluation.log_unavailable(results)
    return evaluation.write_reports(ctx, results, params.paths.metrics, params.paths.eval_reports)


def format_table(metrics: dict[str, float], intervals: dict[str, list[float]]) -> str:
    """One line per metric: its value and, where it has one, its 95% bootstrap interval."""
    return "\n".join(f"  {k:28s} {v:.4f}" + (f"  [{intervals[k][0]:.4f}, {intervals[k][1]:.4f}]" if k in intervals else "")
                     for k, v in metrics.items())


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    metrics = run_stage(run, params)
    reports = params.paths.eval_reports
    intervals = json.loads((Path(reports) / eval_reports.INTERVALS).read_text())
    print(f"metrics -> {reports}/{eval_reports.METRICS}, summary -> {params.paths.metrics} "
          f"(protocols: {reports}/{eval_reports.PROTOCOL})\n"
          f"{format_table(metrics, intervals)}\n[low, high]: 95% bootstrap interval over the test images")


if __name__ == "__main__":
    main()
