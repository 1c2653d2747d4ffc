"""`dvc repro` and `dvc exp run` of the whole pipeline on the tiny embedded dataset, in a
throwaway git repo: what a user runs, literally."""

import json
from pathlib import Path
from typing import Callable

import mlflow
import pytest

from tests.helpers import documented_commands, make_repo, run

STAGES = ("download", "prepare", "train", "translate", "ref_stats", "segmenter", "classifier", "evaluate", "record")
ALWAYS = {"record": ["always changed"]}  # the stage that keeps MLflow a record of the outputs runs every time


def runs_of(repo: Path, db: str = "mlflow.db") -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / db}")
    return client.search_runs([client.get_experiment_by_name("cyclegan-pipeline").experiment_id])


def assert_holds(run, metrics: dict[str, float]) -> None:
    """The run holds every number of an evaluation's metrics.json, with the file's value."""
    held = {k[len("eval/"):]: v for k, v in run.data.metrics.items() if k.startswith("eval/")}
    assert held == metrics, (run.info.run_name, set(metrics) ^ set(held))


def after_repro(repo: Path, out: str) -> None:
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    manifest = json.loads((repo / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["counts"]["trainA"] == 6 and manifest["counts"]["testB"] == 4
    assert len(list((repo / "data" / "translated" / "AtoB").glob("*.png"))) == 4
    assert (repo / "reports" / "train" / "samples.png").exists()
    metrics = json.loads((repo / "reports" / "eval" / "metrics.json").read_text())
    assert isinstance(metrics["fid_AtoB"], float) and isinstance(metrics["fcn_AtoB_pixel_acc"], float)
    # DVC's metrics table: the summary, numbers only, in one row that fits a terminal
    shown = run(["dvc", "metrics", "show"], repo).stdout
    assert "fcn_AtoB_class_iou" in shown and "unavailable" not in shown
    assert max(map(len, shown.splitlines())) <= 160, shown
    (default,) = runs_of(repo)
    assert_holds(default, metrics)
    # a second repro computes nothing: every stage is up to date, and the record finds the run holding the reports
    again = run(["dvc", "repro"], repo).stdout
    assert [s for s in STAGES if f"Running stage '{s}'" in again] == ["record"] and "0 run(s) brought up to date" in again
    # an edit of the FCN-score math makes exactly the stages that compute FCN-scores stale
    math_py = repo / "pipeline" / "metrics" / "math.py"
    original = math_py.read_text()
    math_py.write_text(original + "# an edit\n")
    assert set(json.loads(run(["dvc", "status", "--json"], repo).stdout)) == {"segmenter", "evaluate", *ALWAYS}
    math_py.write_text(original)
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout) == ALWAYS
    # outputs are a function of their inputs: a fresh clone in another directory reproduces the committed
    # dvc.lock (the md5 of every output, so byte-identical outputs) and leaves git status clean
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    clone = repo.parent / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], repo.parent)
    out = run(["dvc", "repro"], clone).stdout
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
    assert (clone / "dvc.lock").read_text() == (repo / "dvc.lock").read_text()
    # the clone's evaluation is the committed one, so DVC skips evaluate; its MLflow run holds it all the same
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" not in out
    (cloned,) = runs_of(clone)
    assert_holds(cloned, metrics)
    # results pulled from elsewhere, no training against this store: the record opens a run that says so
    run(["dvc", "repro"], clone, {"MLFLOW_TRACKING_URI": f"sqlite:///{clone / 'elsewhere.db'}"})
    (pulled,) = runs_of(clone, "elsewhere.db")
    assert_holds(pulled, metrics)
    assert pulled.data.tags["pipeline.source"].startswith("trained elsewhere")
    assert pulled.data.params["lambda_cycle"] == default.data.params["lambda_cycle"] and "train/G" in pulled.data.metrics


def after_ablation(repo: Path, out: str) -> None:
    # only train and what follows it rerun; data and real-image statistics are shared by every experiment
    for stage in ("train", "translate", "evaluate"):
        assert f"Running stage '{stage}'" in out
    for stage in ("download", "prepare", "ref_stats", "segmenter", "classifier"):
        assert f"Running stage '{stage}'" not in out
    assert "lambda_cycle: 5" in (repo / "params.yaml").read_text()
    runs = runs_of(repo)
    assert len(runs) == 2
    exp_run = next(r for r in runs if r.data.tags.get("dvc.exp_name"))
    assert exp_run.data.params["lambda_cycle"] == "5.0" and exp_run.info.status == "FINISHED"
    assert_holds(exp_run, json.loads((repo / "reports" / "eval" / "metrics.json").read_text()))
    # the saved view groups runs by config: a plain run and an experiment are rows of their own, named
    # by what differs from the committed params.yaml
    assert {r.data.tags["config"] for r in runs} == {"defaults", "lambda_cycle=5.0"}


def after_exp_show(repo: Path, out: str) -> None:
    # the changed knob and the summary metrics, in a terminal
    header = out.splitlines()[1]
    assert "lambda_cycle" in header and "fid_AtoB" in header
    assert not {"cyclegan.ngf", "State", "data/model.pt"} & set(header.split())  # unchanged knobs, bookkeeping
    names = run(["dvc", "exp", "ls", "--name-only"], repo).stdout.split()
    assert len(names) == 1 and names[0] in out and max(map(len, out.splitlines())) <= 160, out


def after_plots_diff(repo: Path, out: str) -> None:
    # the pictures of every revision compared, side by side in one page: the committed run's and the experiment's
    page = (repo / "plots_diff" / "index.html").read_text()
    for picture in ("grid.png", "samples.png"):
        shown = [x for x in (repo / "plots_diff" / "static").iterdir() if x.name.endswith(picture.replace("/", "_"))]
        assert len(shown) == 2, (picture, sorted(x.name for x in (repo / "plots_diff" / "static").iterdir()))
        assert all(x.name in page for x in shown)


def after_stargan(repo: Path, out: str) -> None:
    # the multi-domain model on the multi-domain world: every stage reruns (another dataset)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    assert set(json.loads((repo / "reports" / "metrics.json").read_text())) == \
        {"fid_mean", "kid_mean", "fcn_mean_class_iou", "domain_acc_mean"}
    assert len(list((repo / "data" / "translated").glob("?to?"))) == 12


# What each documented command promises, checked right after its first run.
CHECKS: dict[str, Callable[[Path, str], None]] = {
    "dvc repro": after_repro,
    "dvc exp run -S lambda_cycle=5": after_ablation,
    "dvc exp show": after_exp_show,
    "dvc plots diff": after_plots_diff,
    "dvc exp run -S model=stargan": after_stargan,
}


def run_documented(repo: Path, page: str | None) -> set[str]:
    """Run the runnable blocks (of `page`, or of every page) in order, each command's promise checked after
    its first run; the checks that ran."""
    seen = set()
    for command in documented_commands(page):
        out = run(["bash", "-c", command], repo, {"COLUMNS": "400"}).stdout
        check = next((k for k in CHECKS if command.startswith(k)), None)
        if check and check not in seen:
            seen.add(check)
            CHECKS[check](repo, out)
    return seen


@pytest.mark.long
def test_the_readmes_commands_do_what_it_says(tmp_path):
    """The README's runnable blocks, in order, on the tiny configuration: the main job, an experiment, and
    the comparison of the two (the docs pages' commands: the slow test below)."""
    repo = make_repo(tmp_path / "repo")
    seen = run_documented(repo, "README.md")
    assert seen == set(CHECKS) - {"dvc exp run -S model=stargan"}, f"the README no longer shows {set(CHECKS) - seen}"
    # after them every run in the store holds its evaluation: the committed run's is HEAD's, the experiment's the
    # workspace's (dvc exp run applied it)
    committed = json.loads(run(["git", "show", "HEAD:reports/eval/metrics.json"], repo).stdout)
    applied = json.loads((repo / "reports" / "eval" / "metrics.json").read_text())
    for r in runs_of(repo):
        assert_holds(r, applied if r.data.tags.get("dvc.exp_name") else committed)


@pytest.mark.slow  # every page's commands, which add two experiments that rerun every stage (about 2 min)
def test_the_documented_commands_do_what_the_docs_say(tmp_path):
    """Every block the README and the docs mark runnable, in their order, on the tiny configuration; each
    command's promise is checked after its first run."""
    repo = make_repo(tmp_path / "repo")
    seen = run_documented(repo, None)
    assert seen == set(CHECKS), f"the docs no longer show {set(CHECKS) - seen}"

    # the multimodal model by one override, end to end: realism and diversity in its metrics
    r = run(["dvc", "exp", "run", "-S", "model=bicyclegan", "-S", "data.dataset=synthetic", "-n", "bicycle"], repo)
    assert "Running stage 'train'" in r.stdout
    metrics = json.loads((repo / "reports" / "eval" / "metrics.json").read_text())
    assert metrics["diversity_l1_AtoB"] > 0 and isinstance(metrics["fid_AtoB"], float)
    assert len(list((repo / "data" / "translated" / "samples").iterdir())) == 5


def test_a_data_param_change_reruns_the_data_stages(tmp_path):
    repo = make_repo(tmp_path / "repo", {"train.n_epochs": 0, "train.n_epochs_decay": 0})
    run(["dvc", "repro", "prepare"], repo)
    params = (repo / "params.yaml").read_text().replace("n_test: 4", "n_test: 5")
    (repo / "params.yaml").write_text(params)
    r = run(["dvc", "repro", "prepare"], repo)
    assert "Running stage 'download'" in r.stdout and "Running stage 'prepare'" in r.stdout
    manifest = json.loads((repo / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["counts"]["testB"] == 5
