"""MLflow tracking: the store (its URI, reachability, the experiment with its saved view in the UI); one
run's handle is pipeline/tracker.py.

The store defaults to `sqlite:///<repo root>/mlflow.db`, an absolute path: queued DVC experiments
run in a temporary copy under <repo root>/.dvc/tmp/exps/, and their runs must still land in the
project's store. MLFLOW_TRACKING_URI (a shared server, say) overrides params' `mlflow.tracking_uri`.
mlflow is imported lazily (it costs seconds), here and by the run's handle (tracker.py), the model logging and
loading (mlflow_model.py, translator.py) only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import subprocess
import time
import zlib
from pathlib import Path
from typing import Iterator

import yaml

from pipeline.config import Params, flatten, knob_columns, logged_params
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


@contextlib.contextmanager
def fluent_store(uri: str) -> Iterator[None]:
    """MLflow's module-level API (log_model, load_model, download_artifacts) pointed at `uri` for the
    block only. mlflow.set_tracking_uri also exports MLFLOW_TRACKING_URI into this process's environment,
    which every later child process (dvc, torchrun, a test's subprocess) would inherit; the variable and
    the setting are put back afterwards. The registry follows the tracking store unless set apart."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # None unsets the variable too


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


def committed_params() -> dict | None:
    """params.yaml as committed at HEAD, flattened (None outside a git repository): what a run's config label is
    measured against. In a queued DVC experiment HEAD is the experiment's baseline commit."""
    try:
        text = subprocess.run(["git", "show", "HEAD:params.yaml"], capture_output=True, text=True, check=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return flatten(yaml.safe_load(text))


LABEL_KNOBS = 4  # changed knobs a config label names; the rest are counted (a row name stays readable)


def config_label(logged: dict[str, object], committed: dict[str, object] | None) -> str:
    """A run's `config` tag when no study names it: the logged params that differ from the committed
    params.yaml, as `key=value` (`lambda_cycle=5.0`), or `defaults`; so that the saved view, which groups
    runs by config, shows a plain `dvc repro` and each `-S` experiment as rows of their own."""
    if committed is None:
        return "defaults"
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in logged.items()}
    changed = [f"{k}={v}" for k, v in plain.items() if k in committed and committed[k] != v]
    shown = changed[:LABEL_KNOBS] + ([f"(+{len(changed) - LABEL_KNOBS} more)"] if len(changed) > LABEL_KNOBS else [])
    return " ".join(shown) or "defaults"


def run_tags(params: Params, exp_name: str | None) -> dict[str, str]:
    """Tags that find and group runs: `config` and `study` (from params mlflow.config / mlflow.study,
    set by the study commands; without a study, `config` names what differs from the committed
    params.yaml), `seed`, the model and dataset, the git commit, and the DVC experiment."""
    tags = {"seed": str(params.seed), "pipeline.model": params.model, "pipeline.dataset": params.data.dataset,
            "pipeline.stage": "train", "git.rev": git_rev()}
    config = params.mlflow.config or config_label(logged_params(params), committed_params())
    labels = {"study": params.mlflow.study, "config": config, "dvc.exp_name": exp_name}
    return {**tags, **{k: v for k, v in labels.items() if v}}


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when the store cannot be used: a server
    that does not answer, or a sqlite file whose folder is missing or read-only."""
    import urllib.error
    import urllib.request

    fix = "start the server, fix MLFLOW_TRACKING_URI / mlflow.tracking_uri, or unset both for the local store"
    if is_server(uri):
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


# MLflow 3's declaration of a model-training experiment: "custom_model_development" is the value its UI's
# "experiment type" selector writes. MLflow 3.17's UI reads its "GenAI | Model training" switch instead
# (default GenAI: the experiment opens on the GenAI overview), hence workflowType in runs_view_url.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_note(experiment_id: str) -> str:
    """The experiment's description (markdown, shown at the top of every experiment page, the GenAI
    overview included): first how to reach the runs, then what they are."""
    view = f"#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"
    return (f"**Runs: [the saved comparison view]({view})**, or click *Model training* at the top left "
            "(MLflow 3.17 opens experiments in its GenAI view unless told otherwise). "
            "Image-to-image translation trainings (CycleGAN, pix2pix, BicycleGAN), one run per training, evaluated "
            "by the pipeline's evaluate stage (eval/*); group runs by the `config` tag to see the seeds of one "
            "configuration together.")


# A saved view of the runs table ("Views" in MLflow 3's UI, or the URL runs_view_url gives): the
# ablation knobs beside the summary metrics (FCN class IoU, FID, KID), runs grouped by the `config` tag so
# the seeds of one configuration form one row (their average). MLflow keeps a saved view as an experiment
# tag mlflow.sharedViewState.<key> holding {"name", "createdAt", "updatedAt", "state": "deflate;" +
# base64(zlib(JSON of the table's state))}; this writes that format (MLflow 3.17's), and a UI that does
# not know it ignores the tag.
VIEW_KEY = "knobs-vs-scores"
VIEW_NAME = "knobs vs FCN-score, FID, KID (grouped by config)"
VIEW_PARAMS = knob_columns("view")  # the knobs declared view=<position> (pipeline/knobs.py)


def runs_view_state(metrics: list[str]) -> dict:
    """The runs-table state of the saved view: VIEW_PARAMS and eval/<metric> columns, grouped by config."""
    return {"searchFilter": "", "orderByKey": "attributes.start_time", "orderByAsc": False, "startTime": "ALL",
            "lifecycleFilter": "Active", "datasetsFilter": [], "modelVersionFilter": "All Runs",
            "selectedColumns": [f"params.`{p}`" for p in VIEW_PARAMS] + [f"metrics.`eval/{m}`" for m in metrics],
            "columnOrder": [], "columnWidths": {}, "runsHiddenMode": "FIRST_10_RUNS", "viewMaximized": False,
            "runListHidden": False, "isAccordionReordered": False, "useGroupedValuesInCharts": True,
            "hideEmptyCharts": True,
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": "config"}]},
            "groupsExpanded": {}, "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0,
                                                            "selectedXAxisMetricKey": ""}}


def saved_view_tag(name: str, state: dict, now_ms: int) -> str:
    packed = base64.b64encode(zlib.compress(json.dumps(state, separators=(",", ":")).encode())).decode()
    return json.dumps({"name": name, "createdAt": now_ms, "updatedAt": now_ms, "state": "deflate;" + packed})


def runs_view_url(uri: str, experiment_id: str) -> str:
    """Where the UI shows the saved view: the tracking server itself, or for a local store `mlflow ui`'s
    default address. workflowType=machine_learning: MLflow 3.17's UI opens every experiment as a GenAI one
    (traces) unless the "Model training" switch or this parameter says otherwise."""
    host = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    return f"{host}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"


def ui_hint(uri: str, experiment_id: str) -> str:
    """One line: how to look at the runs."""
    start = "" if uri.startswith(("http://", "https://")) else f"`mlflow ui --backend-store-uri {uri}`, then "
    return f"MLflow: {start}{runs_view_url(uri, experiment_id)}"


def open_experiment(client, uri: str, name: str) -> str:
    """The id of experiment `name`, created (with the store, on first use) if missing; declared a
    model-training experiment, described, and given the saved runs view, either way (an experiment
    made by an older version gets them too; what a user edited is left alone)."""
    from pipeline.metrics.registry import SUMMARY  # the same keys `dvc metrics show` prints

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            exp_id = client.create_experiment(name, artifact_location=artifact_location(uri))
        except Exception:  # another machine of the team created it first: use theirs
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
    exp_id = exp.experiment_id if exp else exp_id
    held = exp.tags if exp else {}
    view = saved_view_tag(VIEW_NAME, runs_view_state([str(k) for k in SUMMARY]), int(time.time() * 1000))
    wanted = {**EXPERIMENT_KIND, "mlflow.note.content": experiment_note(exp_id), f"mlflow.sharedViewState.{VIEW_KEY}": view}
    for key, value in wanted.items():
        if key not in held:
            client.set_experiment_tag(exp_id, key, value)
    return exp_id


def create_store(uri: str, experiment: str) -> None:
    """Create the store and the experiment, and nothing else (no run): done once before parallel
    workers race to do it, as concurrent first-time creation of a sqlite store crashes."""
    check_reachable(uri)
    import mlflow

    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        close_setup_runs(client, open_experiment(client, uri, experiment))
    except Exception as e:
        raise TrackingError(f"MLflow tracking store {uri} is not usable ({type(e).__name__}: {e}); "
                            f"check MLFLOW_TRACKING_URI / mlflow.tracking_uri") from None


def close_setup_runs(client, experiment_id: str) -> None:
    """End the deleted-but-RUNNING `store-init` runs an older version's set-up left in a store (MLflow
    only updates an active run: restore, terminate, delete again)."""
    from mlflow.entities import ViewType

    for r in client.search_runs([experiment_id], "tags.`pipeline.stage` = 'init'", run_view_type=ViewType.DELETED_ONLY):
        if r.info.status == "RUNNING":
            client.restore_run(r.info.run_id)
            client.set_terminated(r.info.run_id, "KILLED")
            client.delete_run(r.info.run_id)


# The training's identity (stages/train.py fingerprint, also in the model file) as a tag of its MLflow run:
# the one link from a model to its run, kept in the store so that no DVC-tracked output holds a run id.
FINGERPRINT_TAG = "pipeline.fingerprint"


def connect(uri: str, experiment: str):
    """(an MlflowClient of `uri`, the id of `experiment`, created with the store on first use)."""
    check_reachable(uri)
    import mlflow  # lazy: seconds of import time

    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
        return client, open_experiment(client, uri, experiment)
    except Exception as e:
        raise TrackingError(f"MLflow tracking store {uri} is not usable ({type(e).__name__}: {e}); "
                            f"check MLFLOW_TRACKING_URI / mlflow.tracking_uri") from None


def training_runs(client, experiment_id: str, fingerprint: str) -> list:
    """The runs of the training `fingerprint`, newest first."""
    return client.search_runs([experiment_id], f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}'",
                              order_by=["attributes.start_time DESC"])
