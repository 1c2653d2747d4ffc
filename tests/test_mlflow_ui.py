"""What a researcher meets in MLflow's UI: a model-training experiment, a saved runs view with the knobs
beside the summary metrics grouped by configuration, no leftover set-up run, and titled sample grids."""

import base64
import json
import re
import shutil
import subprocess
import zlib

import mlflow
import numpy as np
import pytest
import torch

from pipeline import tracking
from pipeline.data.datasets import grid
from pipeline.metrics.registry import KEYS
from pipeline.models.registry import MODELS
from tests.helpers import make_repo, run
from tests.servers import mlflow_server


def decoded_view(tag_value: str) -> dict:
    """The runs-table state inside a saved view, decoded as MLflow's UI does ("deflate;" + base64 zlib)."""
    view = json.loads(tag_value)
    kind, packed = view["state"].split(";", 1)
    assert kind == "deflate"
    return {**view, "state": json.loads(zlib.decompress(base64.b64decode(packed)))}


def test_the_store_is_created_with_its_experiment_and_no_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.create_store(uri, "cyclegan-pipeline")
    tracking.create_store(uri, "cyclegan-pipeline")  # a second study command changes nothing
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("cyclegan-pipeline")
    assert client.search_runs([exp.experiment_id], run_view_type=mlflow.entities.ViewType.ALL) == []
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    # the description (shown on MLflow 3.17's GenAI landing page too) links to the saved view first
    note = exp.tags["mlflow.note.content"]
    assert note.startswith(f"**Runs: [the saved comparison view](#/experiments/{exp.experiment_id}/runs?"
                           f"viewStateShareKey={tracking.VIEW_KEY}&workflowType=machine_learning)**")
    assert "config" in note

    view = decoded_view(exp.tags[f"mlflow.sharedViewState.{tracking.VIEW_KEY}"])
    state = view["state"]
    assert view["name"] == tracking.VIEW_NAME
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": "config"}]
    summary = {f"metrics.`eval/{k}`" for k, key in KEYS.items() if key.summary}
    assert summary == {c for c in state["selectedColumns"] if c.startswith("metrics.")}
    assert {"metrics.`eval/fcn_AtoB_class_iou`", "metrics.`eval/fid_AtoB`", "params.`lambda_cycle`",
            "params.`cyclegan.adversarial`"} <= set(state["selectedColumns"])


def test_a_set_up_run_an_older_version_left_running_is_ended(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp_id = client.create_experiment("e")
    old = client.create_run(exp_id, run_name="store-init", tags={"pipeline.stage": "init"}).info.run_id
    client.delete_run(old)
    tracking.create_store(uri, "e")
    run = client.get_run(old)
    assert (run.info.status, run.info.lifecycle_stage) == ("KILLED", "deleted")


def test_a_view_the_user_edited_is_left_alone(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking.create_store(uri, "e")
    client = mlflow.MlflowClient(uri)
    exp_id = client.get_experiment_by_name("e").experiment_id
    client.set_experiment_tag(exp_id, f"mlflow.sharedViewState.{tracking.VIEW_KEY}", "edited")
    tracking.create_store(uri, "e")
    assert client.get_experiment(exp_id).tags[f"mlflow.sharedViewState.{tracking.VIEW_KEY}"] == "edited"


def test_the_link_opens_the_view_in_the_model_training_workflow():
    local = tracking.ui_hint("sqlite:////x/mlflow.db", "3")
    assert local.startswith("MLflow: `mlflow ui --backend-store-uri sqlite:////x/mlflow.db`, then http://127.0.0.1:5000/")
    assert local.endswith(f"#/experiments/3/runs?viewStateShareKey={tracking.VIEW_KEY}&workflowType=machine_learning")
    assert tracking.ui_hint("http://mlflow.lab:5000/", "3").startswith("MLflow: http://mlflow.lab:5000/#/experiments/3/")


def test_a_grid_with_titles_has_a_header_row_of_text():
    rows = [torch.zeros(3, 3, 32, 32) for _ in range(2)]  # mid-grey images
    plain, titled = grid(rows), grid(rows, ["input", "translation", "reconstruction"])
    assert titled.shape[1] == plain.shape[1] and titled.shape[0] > plain.shape[0]
    header = titled[: titled.shape[0] - plain.shape[0]]
    assert (header < 100).any() and (header == 255).mean() > 0.5  # dark text on white
    assert np.array_equal(titled[-plain.shape[0]:], plain)
    with pytest.raises(ValueError, match="2 titles for 3 columns"):
        grid(rows, ["input", "translation"])


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_titles_each_column_of_its_sample_grid(make_params, name):
    p = make_params(model=name)
    model = MODELS[name].build(p, torch.device("cpu"), 0)
    model.train(False)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        titles, rows = model.sample_rows(x, x)
    assert len(titles) == rows[0].shape[0] and titles[:2] in (["input", "translation"], ["input", "ground truth"],
                                                                 ["input", "to A"])


def test_a_run_outside_a_study_is_named_by_what_its_params_change():
    """The saved view groups runs by `config`: a plain run and each `-S` experiment get rows of their own."""
    committed = {"lambda_cycle": 10, "seed": 0, "data.domains": ["day", "fog"]}
    assert tracking.config_label({"lambda_cycle": 10.0, "seed": 0, "data.domains": ("day", "fog")}, committed) == "defaults"
    assert tracking.config_label({"lambda_cycle": 5.0, "seed": 1, "data.domains": ("day", "fog")}, committed) == \
        "lambda_cycle=5.0 seed=1"
    assert tracking.config_label({"lambda_cycle": 5.0}, None) == "defaults"  # outside a git repository
    many = {f"k{i}": i + 1 for i in range(6)}
    assert tracking.config_label(many, dict.fromkeys(many, 0)) == "k0=1 k1=2 k2=3 k3=4 (+2 more)"


@pytest.mark.slow  # Debian's chromium (apt-get install chromium), and the README's two runs (about 2 min)
def test_the_link_the_train_stage_prints_shows_every_run_with_its_evaluation_in_a_browser(tmp_path):
    """As a person looks: the README's main command and its experiment, then the saved view that the train stage's
    link opens, rendered by a real headless browser; each run's row holds each summary metric's value."""
    chromium = shutil.which("chromium")
    assert chromium, "this test needs Debian's chromium: apt-get install chromium"
    repo = make_repo(tmp_path / "repo")
    printed = run(["dvc", "repro"], repo).stdout
    run(["dvc", "exp", "run", "-S", "lambda_cycle=5"], repo)
    link = re.search(r"then (http://127\.0\.0\.1:5000/\S+)", printed).group(1)
    with mlflow_server(tmp_path / "ui", f"sqlite:///{repo / 'mlflow.db'}") as ui:
        page = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=3000,1200",
                               "--virtual-time-budget=30000", "--dump-dom", link.replace("http://127.0.0.1:5000", ui.uri)],
                              capture_output=True, text=True, timeout=120).stdout
    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cyclegan-pipeline").experiment_id])
    assert {r.data.tags["config"] for r in runs} == {"defaults", "lambda_cycle=5.0"}
    for r in runs:
        assert f">{r.info.run_name}<" in page, r.info.run_name
        summary = [str(k) for k, spec in KEYS.items() if spec.summary and f"eval/{k}" in r.data.metrics]
        assert len(summary) == 6  # FID, KID and FCN class IoU per direction (diversity: multimodal models only)
        for key in summary:
            shown = re.findall(rf'id="cell-metrics\.`eval/{key}`-\d+" class="ag-cell-value">([^<]+)<', page)
            assert repr(r.data.metrics[f"eval/{key}"]) in shown, (r.info.run_name, key, shown)
