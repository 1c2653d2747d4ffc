"""Interrupted training: the process is killed with SIGKILL at several points (tests/inject/) and a
re-run resumes, losing at most the steps since the last checkpoint, ending with the weights, loss
curve and MLflow run of an uninterrupted training."""

import copy
import logging
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from pipeline import checkpoint
from pipeline.config import parse_params
from pipeline.stages import train
from pipeline.tracking import FINGERPRINT_TAG
from tests.helpers import REPO, elsewhere, make_repo, run_stages, same_weights, set_key
from tests.helpers import env as dvc_env

INJECT = REPO / "tests" / "inject"


def killed_training(params_file: Path, fault: str, cwd: Path = REPO, cmd: list[str] | None = None) -> str:
    """Run the train stage in a child process that kills itself at `fault`; returns its stderr."""
    env = {**dvc_env(), "PIPELINE_FAULT": fault, "PYTHONPATH": str(INJECT)}
    cmd = cmd or [sys.executable, "-m", "pipeline.stages.train", "--params", str(params_file)]
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL) or "SIGKILL" in r.stderr or \
        (cmd[0] == "dvc" and r.returncode != 0), f"{fault}: not killed ({r.returncode}):\n{r.stderr[-3000:]}"
    return r.stderr


@pytest.fixture
def setup(params_dict, tmp_path):
    """A factory: for a model, prepared tiny data, the finished reference run, and params for a run
    to be killed (as an object and as a file)."""
    def make(model: str):
        def params(name: str):
            d = {**copy.deepcopy(params_dict), "paths": {**params_dict["paths"], **{
                k.split("__")[1]: v for k, v in elsewhere(tmp_path, name).items()}}}
            for key, value in UNDER_FAULT[model].items():
                set_key(d, key, value)
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(d))
            return parse_params(d), path
        ref, _ = params("ref")
        ref_run = run_stages(ref, "download", "train")["train"]["mlflow_run_id"]
        cut, cut_file = params("cut")
        return ref, ref_run, cut, cut_file
    return make


def unfinished_runs(uri: str, experiment: str, fingerprint: str) -> list[str]:
    """The MLflow runs of training `fingerprint` that did not finish (a killed one stays RUNNING)."""
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return [r.info.run_id for r in client.search_runs([exp.experiment_id], f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}'")
            if r.info.status != "FINISHED"]


# Every model under the same faults, by its params: StarGAN on the multi-domain world, CUT in both modes (each keeps a
# random stream of its own in the resume state: StarGAN's target labels, CUT's patch positions and FastCUT's flips).
UNDER_FAULT: dict[str, dict[str, object]] = {
    "cyclegan": {"model": "cyclegan"}, "pix2pix": {"model": "pix2pix"}, "bicyclegan": {"model": "bicyclegan"},
    "stargan": {"model": "stargan", "data.dataset": "synthetic_multi"},
    "cut": {"model": "cut", "cut.mode": "cut"}, "fastcut": {"model": "cut", "cut.mode": "fastcut"},
}
# CycleGAN and CUT: 12 steps (6 images x 2 epochs); pix2pix and BicycleGAN: 10 (5 pairs x 2); StarGAN: 42 (2 epochs
# over 6 + 5 x 3 images). Checkpoints at 0, 3, 6, 9, ... and the end; a loss row every 2 steps. torch.save calls:
# 1 = step 0, 2 = step 3, 3 = step 6, ...; latest->previous moves: 1 at step 3, 2 at step 6.
STEPS = {"cyclegan": 12, "pix2pix": 10, "bicyclegan": 10, "stargan": 42, "cut": 12, "fastcut": 12}
CASES = {
    "before the first periodic checkpoint": ("step:2", 0),
    "between checkpoints": ("step:8", 6),
    "while writing a checkpoint": ("checkpoint-write:3", 3),
    "between the checkpoint renames": ("checkpoint-rename:2", 3),
    "before the loss curve reached MLflow": ("mlflow:3", 9),
    "after the final model, before the reports": ("export:1", None),  # None: at the end
}
# the default run kills CycleGAN at three points (mid-run, mid-write, after the model); the other points and
# models (the same resume code, 7-9 s each) run with the slow tests
DEFAULT_CASES = ("between checkpoints", "while writing a checkpoint", "after the final model, before the reports")
SLOW = pytest.mark.slow
RUNS = [pytest.param("cyclegan", case, marks=() if case in DEFAULT_CASES else SLOW) for case in CASES] + \
       [pytest.param(model, case, marks=SLOW) for model in ("pix2pix", "bicyclegan", "stargan", "cut", "fastcut")
        for case in ("between checkpoints", "after the final model, before the reports")]


@pytest.mark.long
@pytest.mark.parametrize("model, case", RUNS)
def test_sigkill_then_rerun_resumes_to_the_uninterrupted_result(setup, model, case, caplog):
    fault, resumed_at = CASES[case]
    total = STEPS[model]
    resumed_at = total if resumed_at is None else resumed_at
    ref, ref_run, cut, cut_file = setup(model)
    killed_training(cut_file, fault)
    ckpt = Path(cut.paths.checkpoints)
    fp = checkpoint.load_resume_state(ckpt)["fingerprint"]
    [run_id] = unfinished_runs(cut.mlflow.tracking_uri, cut.mlflow.experiment, fp)

    with caplog.at_level(logging.INFO, logger="pipeline"):
        result = train.train(cut, progress=False)
    assert f"resuming from step {resumed_at} of {total}" in caplog.text
    assert not list(ckpt.glob(".*.tmp")), "a killed write left a temporary file behind"
    curve = (Path(cut.paths.train_reports) / "losses.csv").read_text()
    assert curve == (Path(ref.paths.train_reports) / "losses.csv").read_text()
    assert same_weights(ref.paths.model, cut.paths.model)

    # the killed run is the one that finished: no orphan, every loss point exactly once
    assert result["mlflow_run_id"] == run_id
    client = mlflow.MlflowClient(tracking_uri=cut.mlflow.tracking_uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "train/lr")] == list(range(2, total + 1, 2))
    # G's loss at the steps the uninterrupted run logged it (StarGAN updates G every n_critic-th step only)
    steps = lambda run, key: [m.step for m in client.get_metric_history(run, key)]  # noqa: E731
    assert steps(run_id, "train/G") == steps(ref_run, "train/G")
    assert [m.value for m in client.get_metric_history(run_id, "train/G")] == \
           [m.value for m in client.get_metric_history(ref_run, "train/G")]


@pytest.mark.long
def test_dvc_repro_after_a_kill_resumes_from_the_checkpoint(tmp_path):
    repo = make_repo(tmp_path / "repo")  # 12 steps, checkpoints every 3
    killed_training(repo / "params.yaml", "step:8", cwd=repo, cmd=["dvc", "repro", "train"])
    assert checkpoint.load(repo / "data" / "checkpoints" / "latest.pt")["step"] == 6
    r = subprocess.run(["dvc", "repro", "train"], cwd=repo, env=dvc_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resuming from step 6 of 12" in r.stderr
    assert "Running stage 'download'" not in r.stdout  # the data stages completed before the kill
    assert checkpoint.load(repo / "data" / "model.pt")["steps"] == 12
    assert "train" in (repo / "dvc.lock").read_text()
