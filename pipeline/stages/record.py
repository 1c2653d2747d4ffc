"""Stage `record`: MLflow as a record of what DVC's outputs hold. The evaluation's reports (paths.eval_reports)
-> every MLflow run of the training that made the workspace's model (found by the fingerprint in
paths.translated/info.json): eval/<key> and eval_ci95/<key>/{low,high} metrics with the files' values, the report
files as artifacts under eval/, the tag eval.unavailable.

It always runs (dvc.yaml: always_changed) and writes nothing DVC tracks, so MLflow follows the outputs whichever
stages DVC skipped: a fresh clone whose evaluation is committed, a queued experiment, a `dvc exp apply`, results
pulled from a DVC remote. It is idempotent: a run whose tag pipeline.recorded equals the reports' SHA-256 is left
alone, so a second run costs one query. When the store holds no run of that training (its results were trained
elsewhere and pulled), it opens one, tagged pipeline.source, with the params of params.yaml (the ones DVC's lock
ties to those results), the loss curves of paths.train_reports and its sample grid.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.artifacts import eval_reports, translations
from pipeline.cli import run_stage, stage_main
from pipeline.config import Params, logged_params
from pipeline.errors import StageError, TrackingError
from pipeline.tracker import Tracker
from pipeline.tracking import FINGERPRINT_TAG, connect, run_tags, tracking_uri, training_runs, ui_hint
from pipeline.training import read_history_csv

log = logging.getLogger("pipeline")
RECORDED_TAG = "pipeline.recorded"  # the SHA-256 of the reports the run holds (eval_reports.digest)
SOURCE_TAG = "pipeline.source"


def run(params: Params) -> dict:
    """{"runs": the ids of the runs brought up to date, "held": of those that held the reports already}."""
    fingerprint = translations.read_info(params.paths.translated).get("fingerprint")
    if not fingerprint:
        log.info("the translations come from no training (a baseline): no MLflow run to record them in")
        return {"runs": [], "held": [], "ui": None}
    reports = params.paths.eval_reports
    digest = eval_reports.digest(reports)
    uri = tracking_uri(params.mlflow.tracking_uri)
    try:
        client, exp_id = connect(uri, params.mlflow.experiment)
        runs = training_runs(client, exp_id, fingerprint)
        trackers = [Tracker(client, uri, exp_id, r.info.run_id) for r in runs] or [pulled_run(params, client, uri, exp_id,
                                                                                              fingerprint)]
        held = [r.info.run_id for r in runs if r.data.tags.get(RECORDED_TAG) == digest]
        for tracker in trackers:
            if tracker.run_id not in held:
                record(tracker, reports, digest)
    except TrackingError as e:
        raise StageError(f"{e}; the reports in {reports} are complete: rerun `dvc repro` when the store answers "
                         f"(only this stage runs again)") from None
    return {"runs": [t.run_id for t in trackers], "held": held, "ui": ui_hint(uri, exp_id)}


def record(tracker: Tracker, reports: str | Path, digest: str) -> None:
    """The reports into one run: metrics, artifacts, the unavailable metrics' reasons, then the digest."""
    tracker.log_metrics(eval_reports.mlflow_metrics(reports))
    lines = eval_reports.unavailable_lines(eval_reports.read_json(reports, eval_reports.PROTOCOL))
    if lines:  # one tag, not one per key: tags are the Group by menu's entries
        tracker.set_tags({"eval.unavailable": "\n".join(lines)[:5000]})
    for path in eval_reports.paths(reports):
        tracker.log_artifact(path, "eval")
    tracker.set_tags({RECORDED_TAG: digest})


def pulled_run(params: Params, client, uri: str, exp_id: str, fingerprint: str) -> Tracker:
    """A run for results whose training this store never saw: params, loss curves and the sample grid."""
    exp_name = os.environ.get("DVC_EXP_NAME")
    source = (f"trained elsewhere: this store held no run of training {fingerprint[:12]}; params from params.yaml, "
              f"curves from {params.paths.train_reports}, metrics from {params.paths.eval_reports}")
    tags = {**run_tags(params, exp_name), "pipeline.stage": "record", SOURCE_TAG: source, FINGERPRINT_TAG: fingerprint}
    run = client.create_run(exp_id, run_name=f"{exp_name or f'{params.model}-{params.data.dataset}'} (pulled)", tags=tags)
    tracker = Tracker(client, uri, exp_id, run.info.run_id)
    tracker.log_params(logged_params(params))
    curves = Path(params.paths.train_reports)
    tracker.log_rows(read_history_csv((curves / "losses.csv").read_text()), "train/", skip=("step", "epoch"))
    for name in ("losses.csv", "samples.png"):
        tracker.log_artifact(curves / name)
    tracker.finish()
    log.info("no MLflow run of training %s in %s: opened run %s for the results here", fingerprint[:12], uri, tracker.run_id)
    return tracker


def main(argv: list[str] | None = None) -> None:
    params, _ = stage_main(__spec__.name, __doc__, argv)
    done = run_stage(run, params)
    if done["runs"]:
        fresh = len(done["runs"]) - len(done["held"])
        print(f"MLflow: {fresh} run(s) brought up to date with {params.paths.eval_reports}, {len(done['held'])} held it "
              f"already ({', '.join(done['runs'])})\n{done['ui']}")


if __name__ == "__main__":
    main()
