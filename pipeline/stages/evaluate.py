"""Stage `evaluate`: the translations (paths.translated) + the reference features (paths.ref_stats) +
the segmenter (paths.segmenter) -> paths.metrics (the summary for `dvc metrics show/diff` and
`dvc exp show`: FCN class IoU, FID and KID per direction), paths.eval_reports/{metrics.json (every
metric), protocol.json, intervals.json (95% bootstrap intervals), per_image.csv, grid.png}, and every
number in the training's MLflow run.

Every metric is an entry of pipeline/metrics/registry.py; every number carries its protocol (feature
extractor or segmenter, weights, resolution, sample counts). metrics.json holds numbers only: a metric
that cannot be computed here is absent from it, and the reason is in protocol.json ("unavailable"), in
the log and in the MLflow run (tag eval.unavailable); it is never written as a number.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.errors import StageError, TrackingError
from pipeline.metrics import evaluation
from pipeline.metrics.base import Result
from pipeline.metrics.context import Context
from pipeline.runtime import configure_threads
from pipeline.tracker import Tracker
from pipeline.tracking import FINGERPRINT_TAG, check_reachable, tracking_uri

log = logging.getLogger("pipeline")


def run(params: Params) -> dict:
    configure_threads(params.evaluate.num_threads, "evaluate.num_threads")
    ctx = Context(params)
    fingerprint = ctx.info["fingerprint"]  # the training that made the model (None: a model-free baseline)
    if fingerprint:
        check_reachable(tracking_uri(params.mlflow.tracking_uri))  # fail now, not after the metrics
    results = evaluation.compute(ctx)
    evaluation.log_unavailable(results)
    metrics = evaluation.write_reports(ctx, results, params.paths.metrics, params.paths.eval_reports)
    if fingerprint:
        log_to_mlflow(params, fingerprint, results)
    return metrics


def log_to_mlflow(params: Params, fingerprint: str, results: list[Result]) -> None:
    """Every number into the MLflow run of the training that made the model."""
    try:
        tracker = Tracker.of_model(tracking_uri(params.mlflow.tracking_uri), params.mlflow.experiment, fingerprint)
    except TrackingError as e:
        raise StageError(f"{e}; the metrics were written to {params.paths.metrics}") from None
    if tracker is None:
        log.warning("the MLflow store holds no run of the training that made this model (tag %s = %s): the "
                    "metrics are in %s only", FINGERPRINT_TAG, fingerprint, params.paths.eval_reports)
        return
    tracker.log_metrics({f"eval/{k}": v for k, v in evaluation.flat_metrics(results).items()})
    tracker.log_metrics({f"eval_ci95/{k}/{end}": v for k, lo_hi in evaluation.intervals(results).items()
                         for end, v in zip(("low", "high"), lo_hi, strict=True)})
    lines = evaluation.unavailable_lines(results)
    if lines:  # one tag, not one per key: tags are the Group by menu's entries
        tracker.set_tags({"eval.unavailable": "\n".join(lines)[:5000]})
    for name in ("metrics.json", "protocol.json", "intervals.json", "per_image.csv", "grid.png"):
        tracker.log_artifact(Path(params.paths.eval_reports) / name, "eval")
    tracker.finish()


def format_table(metrics: dict[str, float], intervals: dict[str, list[float]]) -> str:
    """One line per metric: its value and, where it has one, its 95% bootstrap interval."""
    return "\n".join(f"  {k:28s} {v:.4f}" + (f"  [{intervals[k][0]:.4f}, {intervals[k][1]:.4f}]" if k in intervals else "")
                     for k, v in metrics.items())


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    metrics = run_stage(run, params)
    reports = params.paths.eval_reports
    intervals = json.loads((Path(reports) / "intervals.json").read_text())
    print(f"metrics -> {reports}/metrics.json, summary -> {params.paths.metrics} (protocols: {reports}/protocol.json)\n"
          f"{format_table(metrics, intervals)}\n[low, high]: 95% bootstrap interval over the test images")


if __name__ == "__main__":
    main()
