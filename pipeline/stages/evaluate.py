"""Stage `evaluate`: the translations (paths.translated) + the reference features (paths.ref_stats) +
the evaluator (paths.evaluator) -> paths.metrics (flat JSON for `dvc metrics show/diff`),
paths.eval_reports/{protocol.json, per_image.csv, grid.png}, and the same numbers in the training's
MLflow run.

Every metric is an entry of pipeline/metrics/registry.py; every number carries its protocol (feature
extractor or segmenter, weights, resolution, sample counts); a metric that cannot be computed here is
written as "unavailable: <reason>", never as a number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.cli import run_stage, stage_main
from pipeline.config import Params
from pipeline.errors import StageError, TrackingError
from pipeline.metrics import evaluation
from pipeline.metrics.base import Result
from pipeline.metrics.context import Context
from pipeline.runtime import configure_threads
from pipeline.tracking import Tracker, check_reachable, tracking_uri


def run(params: Params) -> dict:
    configure_threads(params.evaluate.num_threads, "evaluate.num_threads")
    ctx = Context(params)
    run_id = ctx.info["mlflow_run_id"]
    if run_id:
        check_reachable(tracking_uri(params.mlflow.tracking_uri))  # fail now, not after the metrics
    results = evaluation.compute(ctx)
    evaluation.log_unavailable(results)
    metrics = evaluation.write_reports(ctx, results, params.paths.metrics, params.paths.eval_reports)
    if run_id:
        log_to_mlflow(params, run_id, results)
    return metrics


def log_to_mlflow(params: Params, run_id: str, results: list[Result]) -> None:
    try:
        tracker = Tracker(tracking_uri(params.mlflow.tracking_uri), params.mlflow.experiment, run_id=run_id)
    except TrackingError as e:
        raise StageError(f"{e}; the metrics were written to {params.paths.metrics}") from None
    tracker.log_metrics({f"eval/{r.key}": r.value for r in results if r.reason is None and np.isfinite(r.value)})
    tracker.set_tags({f"eval.unavailable.{r.key}": r.reason[:4000] for r in results if r.reason})
    tracker.log_artifact(params.paths.metrics, "eval")
    for name in ("protocol.json", "per_image.csv", "grid.png"):
        tracker.log_artifact(Path(params.paths.eval_reports) / name, "eval")
    tracker.finish()


def format_table(metrics: dict) -> str:
    return "\n".join(f"  {k:24s} {v:.4f}" if isinstance(v, float) else f"  {k:24s} {v}" for k, v in metrics.items())


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    metrics = run_stage(run, params)
    print(f"metrics -> {params.paths.metrics} (protocols: {params.paths.eval_reports}/protocol.json)\n{format_table(metrics)}")


if __name__ == "__main__":
    main()
