"""`dvc repro` and `dvc exp run` of the whole pipeline on the tiny embedded dataset, in a
throwaway git repo: what a user runs, literally."""

import json
import shlex

import mlflow

from tests.helpers import REPO, make_repo, run


def readme_command(prefix: str) -> list[str]:
    """The README's command line that starts with `prefix`, without its comment, as argv."""
    line = next(x for x in (REPO / "README.md").read_text().splitlines() if x.startswith(prefix))
    return shlex.split(line.split("  #")[0])


def test_dvc_repro_then_an_ablation_experiment(tmp_path):
    repo = make_repo(tmp_path / "repo")
    r = run(["dvc", "repro"], repo)
    for stage in ("download", "prepare", "train", "translate", "ref_stats", "segmenter", "classifier", "evaluate"):
        assert f"Running stage '{stage}'" in r.stdout
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
    # a second repro is a no-op: every stage is up to date
    r = run(["dvc", "repro"], repo)
    assert "Running stage" not in r.stdout
    # an edit of the FCN-score math makes exactly the stages that compute FCN-scores stale
    math_py = repo / "pipeline" / "metrics" / "math.py"
    original = math_py.read_text()
    math_py.write_text(original + "# an edit\n")
    assert set(json.loads(run(["dvc", "status", "--json"], repo).stdout)) == {"segmenter", "evaluate"}
    math_py.write_text(original)
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout) == {}

    # outputs are a function of their inputs: a fresh clone in another directory reproduces the committed
    # dvc.lock (the md5 of every output, so byte-identical outputs) and leaves git status clean
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    run(["dvc", "repro"], clone)
    assert run(["git", "status", "--porcelain"], clone).stdout == ""
    assert (clone / "dvc.lock").read_text() == (repo / "dvc.lock").read_text()

    # the ablation command of the README, literally: only train and what follows it rerun
    r = run(["dvc", "exp", "run", "-S", "lambda_cycle=5", "-n", "cyc5"], repo)
    for stage in ("train", "translate", "evaluate"):
        assert f"Running stage '{stage}'" in r.stdout
    # data and real-image statistics are shared by every experiment: never recomputed
    for stage in ("download", "prepare", "ref_stats", "segmenter", "classifier"):
        assert f"Running stage '{stage}'" not in r.stdout
    assert "lambda_cycle: 5" in (repo / "params.yaml").read_text()

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cyclegan-pipeline").experiment_id])
    assert len(runs) == 2
    exp_run = next(r for r in runs if r.data.tags.get("dvc.exp_name") == "cyc5")
    assert exp_run.data.params["lambda_cycle"] == "5.0" and exp_run.info.status == "FINISHED"
    assert "eval/fid_AtoB" in exp_run.data.metrics

    # the README's `dvc exp show` line, literally: the changed knob and the summary metrics, in a terminal
    table = run([*readme_command("dvc exp show"), "--no-pager"], repo, {"COLUMNS": "400"}).stdout
    header = table.splitlines()[1]
    assert "lambda_cycle" in header and "fid_AtoB" in header
    assert not {"cyclegan.ngf", "State", "data/model.pt"} & set(header.split())  # unchanged knobs, bookkeeping
    assert "cyc5" in table and max(map(len, table.splitlines())) <= 160, table

    # the multimodal model by one override, end to end: realism and diversity in its metrics
    r = run(["dvc", "exp", "run", "-S", "model=bicyclegan", "-n", "bicycle"], repo)
    assert "Running stage 'train'" in r.stdout and "Running stage 'prepare'" not in r.stdout
    metrics = json.loads((repo / "reports" / "eval" / "metrics.json").read_text())
    assert metrics["diversity_l1_AtoB"] > 0 and isinstance(metrics["fid_AtoB"], float)
    assert len(list((repo / "data" / "translated" / "samples").iterdir())) == 5

    # the multi-domain model on the multi-domain world, literally as the README says
    r = run(["dvc", "exp", "run", "-S", "model=stargan", "-S", "data.dataset=synthetic_multi", "-n", "star"], repo)
    for stage in ("download", "prepare", "train", "translate", "ref_stats", "segmenter", "classifier", "evaluate"):
        assert f"Running stage '{stage}'" in r.stdout
    assert set(json.loads((repo / "reports" / "metrics.json").read_text())) == \
        {"fid_mean", "kid_mean", "fcn_mean_class_iou", "domain_acc_mean"}
    assert len(list((repo / "data" / "translated").glob("?to?"))) == 12


def test_a_data_param_change_reruns_the_data_stages(tmp_path):
    repo = make_repo(tmp_path / "repo", {"train.n_epochs": 0, "train.n_epochs_decay": 0})
    run(["dvc", "repro", "prepare"], repo)
    params = (repo / "params.yaml").read_text().replace("n_test: 4", "n_test: 5")
    (repo / "params.yaml").write_text(params)
    r = run(["dvc", "repro", "prepare"], repo)
    assert "Running stage 'download'" in r.stdout and "Running stage 'prepare'" in r.stdout
    manifest = json.loads((repo / "data" / "prepared" / "manifest.json").read_text())
    assert manifest["counts"]["testB"] == 5
