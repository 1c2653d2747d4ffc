"""MLflow tracking: one run per training, the same run reopened by later stages and resumes.

The store defaults to `sqlite:///<repo root>/mlflow.db`, an absolute path: queued DVC experiments
run in a temporary copy under <repo root>/.dvc/tmp/exps/, and their runs must still land in the
project's store. MLFLOW_TRACKING_URI (a shared server, say) overrides params' `mlflow.tracking_uri`.
mlflow is imported only here, lazily: it costs seconds.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

from pipeline.errors import TrackingError

log = logging.getLogger("pipeline")


def repo_root(start: Path | None = None) -> Path:
    """The project's root: DVC_ROOT when DVC runs us, else the nearest folder holding .dvc/;
    a queued experiment's temporary copy (<root>/.dvc/tmp/exps/...) maps back to <root>."""
    here = Path(os.environ.get("DVC_ROOT") or start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return here


def tracking_uri(configured: str | None) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or configured or f"sqlite:///{repo_root() / 'mlflow.db'}"


def artifact_location(uri: str) -> str | None:
    """Artifacts of a sqlite store go beside the database file (absolute, like the store: MLflow's
    default, ./mlruns of the working directory, would scatter them into temporary exp copies).
    Other stores (a server) choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "mlartifacts").resolve().as_uri()
    return None


def git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when the store cannot be used: a server
    that does not answer, or a sqlite file whose folder is missing or read-only."""
    import urllib.error
    import urllib.request

    fix = "start the server, fix MLFLOW_TRACKING_URI / mlflow.tracking_uri, or unset both for the local store"
    if uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
        except urllib.error.HTTPError:
            pass  # it answered: a proxy without /health is still a server
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise TrackingError(f"MLflow tracking server {uri} is unreachable ({reason}); {fix}. "
                                f"Nothing was trained, so nothing is lost") from None
    elif uri.startswith("sqlite:///"):
        folder = Path(uri[len("sqlite:///"):]).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"MLflow store {uri}: folder {folder} is missing or not writable; {fix}")


class Tracker:
    """A thin handle on one MLflow run (created, or reopened by id)."""

    def __init__(self, uri: str, experiment: str, run_id: str | None = None, run_name: str | None = None,
                 tags: dict[str, str] | None = None):
        check_reachable(uri)
        import mlflow  # lazy: seconds of import time

        self.mlflow = mlflow
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.uri = uri
        try:
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(
                experiment, artifact_location=artifact_location(uri))
            if run_id is not None:
                self.client.get_run(run_id)  # fails if the run is gone (e.g. another store)
                self.run_id = run_id
                self.client.update_run(run_id, status="RUNNING")
            else:
                self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags or {}).info.run_id
        except Exception as e:
            raise TrackingError(f"MLflow tracking store {uri} is not usable ({type(e).__name__}: {e}); "
                                f"check MLFLOW_TRACKING_URI / mlflow.tracking_uri") from None

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
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(prefix + k, float(v), ts, int(row["step"])) for row in rows for k, v in row.items() if k not in skip]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def last_step(self, key: str) -> int:
        """The last step at which metric `key` was logged (-1 when never)."""
        return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=-1)

    def metric_keys(self) -> set[str]:
        return set(self.client.get_run(self.run_id).data.metrics)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


class NoTracker:
    """What ranks other than 0 of a distributed training use in place of a Tracker: the same calls,
    and nothing is logged."""

    def __init__(self):
        self.run_id: str | None = None
        self.uri: str | None = None

    def last_step(self, key: str) -> int:
        return -1

    def metric_keys(self) -> set[str]:
        return set()

    def log_params(self, params: dict) -> None:
        pass

    def log_rows(self, rows: list[dict], prefix: str, skip: tuple[str, ...] = ("step",)) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass
