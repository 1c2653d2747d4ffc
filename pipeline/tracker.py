"""One MLflow run's handle: a training's run (started, or reopened when the training resumes) and the runs the
record stage brings up to date (found by the model's fingerprint); what a training logs reaches a tracking server
even through its outages. The store itself (its URI, reachability, the experiment) is pipeline/tracking.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.errors import TrackingError
from pipeline.tracking import FINGERPRINT_TAG, check_reachable, connect, is_server, training_runs

log = logging.getLogger("pipeline")
# How long a tracking server's answer to /health stands: deliveries within it are not preceded by another probe, so
# a remote server is asked about once per this many seconds, not once per file or batch. A delivery that fails asks
# again at once. Short, since a server that stops within it costs one call MLflow's own retries (minutes).
HEALTH_TTL_S = 1.0


class Tracker:
    """A thin handle on one MLflow run: a training's run (started, or reopened to resume it), or a run of
    the training that made a model (found by its fingerprint: stages/record.py).

    A training's tracker (`outbox` set) outlives outages of a tracking server: before each delivery it asks
    the server's /health (milliseconds; MLflow's own retries would hold the training for minutes; an answer stands
    for HEALTH_TTL_S), and what
    it cannot deliver is kept: loss-curve points in memory, files in `outbox` (a folder beside the resume
    state, so they survive a crash too). Both go out, in their order, at the next delivery the server
    answers. A crash loses no point either: the resumed run re-sends the curve after the last step the
    server holds (stages/train.py, open_run). deliver_all() is the end of the training: it waits up to
    `wait_s` for the server and fails, naming what is kept, if it does not come back."""

    def __init__(self, client, uri: str, experiment_id: str, run_id: str, *, outbox: Path | None = None,
                 wait_s: float = 0.0):
        self.client, self.uri, self.experiment_id, self.run_id = client, uri, experiment_id, run_id
        self.outbox, self.wait_s = outbox, wait_s
        self.pending: list = []  # mlflow.entities.Metric points not yet delivered
        self.down = False  # the server stopped answering and has not answered since
        self.answered_at = -HEALTH_TTL_S  # time.monotonic() of the server's last answer to /health

    @classmethod
    def for_training(cls, uri: str, experiment: str, fingerprint: str, *, resume: bool, run_name: str,
                     tags: dict[str, str], outboxes: Path, wait_s: float) -> Tracker:
        """With `resume`, the newest run of this training that did not finish (a resumed training goes on
        logging into it, under the labels of the params it resumes under, and delivers the files it kept);
        else, or when there is none, a new run tagged with the fingerprint. Its outbox: outboxes/<run id>."""
        client, exp_id = connect(uri, experiment)
        unfinished = [r for r in training_runs(client, exp_id, fingerprint) if r.info.status != "FINISHED"]
        if resume and unfinished:
            tracker = cls(client, uri, exp_id, unfinished[0].info.run_id, outbox=outboxes / unfinished[0].info.run_id,
                          wait_s=wait_s)
            client.update_run(tracker.run_id, status="RUNNING")
            tracker.set_tags(tags)
            return tracker
        # files another training kept: its resume state, which this training's replaces, was their way out
        shutil.rmtree(outboxes, ignore_errors=True)
        run = client.create_run(exp_id, run_name=run_name, tags={**tags, FINGERPRINT_TAG: fingerprint})
        return cls(client, uri, exp_id, run.info.run_id, outbox=outboxes / run.info.run_id, wait_s=wait_s)

    def last_value(self, key: str) -> float | None:
        """The value of metric `key` at its last step (None when never logged)."""
        history = self.client.get_metric_history(self.run_id, key)
        return max(history, key=lambda m: m.step).value if history else None

    def log_params(self, params: dict[str, Any]) -> None:
        """Log the params the run does not hold yet (a resumed run may have been cut off mid-way)."""
        from mlflow.entities import Param

        held = self.client.get_run(self.run_id).data.params
        items = [Param(k, str(v)) for k, v in params.items() if k not in held]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.log_rows([{"step": step or 0, **metrics}], "")

    def log_rows(self, rows: list[dict[str, float]], prefix: str, skip: tuple[str, ...] = ("step",)) -> None:
        """Rows of a loss curve ({"step": s, "G": ...}) in one batch per 1000 points, each at its step."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.pending += [Metric(prefix + k, float(v), ts, int(row["step"])) for row in rows for k, v in row.items()
                         if k not in skip]
        self.flush()

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Deliver the file now, or keep a copy in the outbox until the server answers."""
        if self.flush() and self.deliver(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path)):
            return
        kept = self.outbox / (artifact_path or ".") / Path(path).name
        kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = kept.with_name(f".{kept.name}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, kept)

    def kept_files(self) -> list[Path]:
        if self.outbox is None or not self.outbox.is_dir():
            return []
        return sorted(f for f in self.outbox.rglob("*") if f.is_file() and not f.name.startswith("."))

    def flush(self) -> bool:
        """Deliver the points and files kept back, oldest first; True when nothing is left."""
        while self.pending:
            chunk = self.pending[:1000]
            if not self.deliver(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c)):
                return False
            del self.pending[:len(chunk)]
        for f in self.kept_files():
            folder = f.parent.relative_to(self.outbox).as_posix()
            if not self.deliver(lambda f=f, d=folder: self.client.log_artifact(self.run_id, str(f), None if d == "." else d)):
                return False
            f.unlink()
        if self.outbox is not None and self.outbox.is_dir():
            shutil.rmtree(self.outbox)  # emptied: no folder left beside the resume state
            with contextlib.suppress(OSError):
                self.outbox.parent.rmdir()
        return True

    def deliver(self, call) -> bool:
        """Run one call to the store. False (nothing sent) when a training's tracking server does not
        answer; a store that fails otherwise raises, as does any store outside a training."""
        if self.outbox is None or not is_server(self.uri):
            call()
            return True
        if not self.answers():
            return False
        try:
            call()
        except Exception:
            if self.answers(fresh=True):
                raise
            self.went_down()
            return False
        return True

    def answers(self, fresh: bool = False) -> bool:
        """Whether the server answers /health: asked anew when `fresh`, when it was down, or when its last answer
        is older than HEALTH_TTL_S."""
        now = time.monotonic()
        if not (fresh or self.down) and now - self.answered_at < HEALTH_TTL_S:
            return True
        try:
            check_reachable(self.uri, timeout=3.0)
        except TrackingError:
            self.went_down()
            return False
        self.answered_at = now
        if self.down:
            self.down = False
            log.info("MLflow server %s answers again: sending what was kept", self.uri)
        return True

    def went_down(self) -> None:
        if not self.down:
            self.down = True
            log.warning("MLflow server %s does not answer: the training goes on and keeps what it logs until the "
                        "server is back (%d points so far; files in %s)", self.uri, len(self.pending), self.outbox)

    def deliver_all(self) -> None:
        """Everything kept back delivered, waiting up to wait_s for the server; else a TrackingError."""
        deadline = time.monotonic() + self.wait_s
        while not self.flush():
            if time.monotonic() >= deadline:
                raise TrackingError(
                    f"MLflow server {self.uri} has not answered for {self.wait_s / 60:g} minutes (mlflow.server_wait_minutes) "
                    f"at the end of the training; {len(self.pending)} curve points and {len(self.kept_files())} files "
                    f"(in {self.outbox}) are not in run {self.run_id}. The model and the final checkpoint are saved: "
                    f"rerun the train stage (dvc repro) when the server is back and it sends the rest")
            time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))

    def last_step(self, key: str) -> int:
        """The last step at which metric `key` was logged (-1 when never)."""
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=-1)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def finish(self, status: str = "FINISHED") -> None:
        """Close the run; a finished one only after everything kept back was delivered. A failed one the
        server does not hear of stays RUNNING: the rerun resumes it."""
        if status == "FINISHED":
            self.deliver_all()
        self.deliver(lambda: self.client.set_terminated(self.run_id, status=status))


class NoTracker:
    """What ranks other than 0 of a distributed training use in place of a Tracker: the same calls,
    and nothing is logged."""

    def __init__(self):
        self.run_id: str | None = None
        self.uri: str | None = None

    def last_step(self, key: str) -> int:
        return -1

    def last_value(self, key: str) -> float | None:
        return None

    def log_params(self, params: dict) -> None:
        pass

    def log_rows(self, rows: list[dict], prefix: str, skip: tuple[str, ...] = ("step",)) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def deliver_all(self) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass
