"""The ablation sweep: plain -S overrides, queued DVC experiments in parallel workers, one MLflow
store, and the comparison table over seeds."""

import subprocess
import sys

import mlflow
import pandas as pd
import pytest
import torch

from pipeline.config import flatten, to_dict
from pipeline.models.registry import MODELS
from pipeline.runtime import cpu_cores
from pipeline.studies import ablations, report
from tests.helpers import env, make_repo, run


def test_every_ablation_is_a_plain_override_set():
    cmds = ablations.exp_commands(["cycle_alone", "gan_alone"], [0, 1], ["train.n_epochs=2"])
    assert cmds[0] == ["dvc", "exp", "run", "--queue", "-n", "cycle_alone-s0", "-S", "cyclegan.adversarial=false",
                       "-S", "seed=0", "-S", "mlflow.study=ablation", "-S", "mlflow.config=cycle_alone",
                       "-S", "train.n_epochs=2"]
    assert [c[5] for c in cmds] == ["cycle_alone-s0", "cycle_alone-s1", "gan_alone-s0", "gan_alone-s1"]
    assert ablations.ABLATIONS["full"] == {}  # the defaults of params.yaml are the full model


# What each ablation of the registry switches off in the CycleGAN step: losses that must be exactly zero,
# and losses that must be absent. Every ablation needs a row (a new one fails until it has one).
SWITCHED_OFF = {
    "full": ([], []),
    "gan_alone": (["cycle_A", "cycle_B", "idt_A", "idt_B"], []),
    "cycle_alone": (["G_A", "G_B"], ["D_A", "D_B"]),
    "gan_forward_cycle": (["cycle_B"], []),
    "gan_backward_cycle": (["cycle_A"], []),
    "no_identity": (["idt_A", "idt_B"], []),
    "no_pool": ([], []),
}


def overrides_of(config: dict) -> dict:
    return {k.replace(".", "__"): v for k, v in config.items()}


@pytest.mark.parametrize("name", list(ablations.ABLATIONS))
def test_each_ablation_changes_only_its_knobs_and_switches_off_its_terms(make_params, name):
    config = ablations.ABLATIONS[name]
    p, base = make_params(**overrides_of(config)), make_params()
    flat, flat_base = flatten(to_dict(p)), flatten(to_dict(base))
    assert {k for k in flat if flat[k] != flat_base[k]} == set(config)
    zero, absent = SWITCHED_OFF[name]
    torch.manual_seed(0)
    model = MODELS[p.model].build(p, torch.device("cpu"), 0)
    losses = model.train_step({"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1})
    assert all(losses[k] == 0.0 for k in zero), losses
    assert not set(absent) & set(losses), losses
    assert all(losses[k] > 0 for k in ("cycle_A", "G_A", "D_A", "idt_A") if k not in zero and k not in absent)


def test_every_ablation_has_its_expectation():
    assert set(SWITCHED_OFF) == set(ablations.ABLATIONS)


@pytest.mark.parametrize("name", list(ablations.MULTIMODAL))
def test_each_multimodal_configuration_trains_its_model(make_params, name):
    p = make_params(**overrides_of(ablations.MULTIMODAL[name]))
    model = MODELS[p.model].build(p, torch.device("cpu"), 0)
    expected = {"pix2pix": {"G", "D"}, "pix2pix_noise": {"G", "D"}, "bicyclegan": {"G", "E", "D", "D2"}}[name]
    assert set(model.nets) == expected


def test_aggregate_over_seeds_and_mark_the_best():
    rows = []
    for config, lc, values in (("full", "10.0", [0.8, 0.6]), ("gan_alone", "0.0", [0.3, 0.5])):
        for seed, v in enumerate(values):
            rows.append({"run": f"{config}-s{seed}", "run_id": "x", "seed": str(seed), "config": config,
                         **{k: "v" for k in report.KNOBS}, "lambda_cycle": lc,
                         "fcn_AtoB_pixel_acc": v, "fid_AtoB": 100 * v})
    agg = report.aggregate(pd.DataFrame(rows))
    full = agg[agg.config == "full"].iloc[0]
    assert full["n"] == 2 and full["fcn_AtoB_pixel_acc_mean"] == 0.7
    assert abs(full["fcn_AtoB_pixel_acc_std"] - 0.1414) < 1e-3  # sample standard deviation
    md = report.markdown(agg)
    assert "**0.700 ± 0.141**" in md          # higher FCN accuracy is better
    assert "**40.000 ± 14.142**" in md        # lower FID is better


def test_a_two_experiment_queue_lands_in_one_store_and_one_table(tmp_path):
    repo = make_repo(tmp_path / "repo")
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    r = subprocess.run([sys.executable, "-m", "pipeline.studies.ablations", "--only", "full", "gan_alone", "--seeds", "0",
                        "-j", "2"], cwd=repo, env=env(), capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("cyclegan-pipeline")
    # set-up made the store and nothing else: every run, deleted ones included, is a finished training
    every = client.search_runs([exp.experiment_id], run_view_type=mlflow.entities.ViewType.ALL)
    assert {(x.info.status, x.data.tags.get("pipeline.stage")) for x in every} == {("FINISHED", "train")}
    runs = client.search_runs([exp.experiment_id], filter_string="tags.study = 'ablation'")
    # the full model's run is its own, labelled, even though its params equal the workspace's
    assert {(x.data.tags["config"], x.data.tags["seed"], x.data.tags["dvc.exp_name"]) for x in runs} == {
        ("full", "0", "full-s0"), ("gan_alone", "0", "gan_alone-s0")}
    gan_alone = next(x for x in runs if x.data.tags["config"] == "gan_alone")
    assert gan_alone.data.params["lambda_cycle"] == "0.0" and "eval/fcn_AtoB_pixel_acc" in gan_alone.data.metrics
    # each of the two workers' stages took its share of the cores (the command sets PIPELINE_CONCURRENT)
    logs = subprocess.run(["dvc", "queue", "logs", "full-s0"], cwd=repo, env=env(), capture_output=True, text=True).stdout
    share = max(1, cpu_cores() // 2)
    for stage in ("train", "translate", "evaluate"):
        assert f"torch threads: {share} ({stage}.num_threads=auto: {cpu_cores()} cores / PIPELINE_CONCURRENT=2)" in logs
    table = (repo / "reports" / "ablation.md").read_text()
    assert "| full |" in table and "| gan_alone |" in table
    assert "| cyclegan-synthetic |" not in table  # the workspace's own `dvc repro` run is not of the study
    runs_csv = pd.read_csv(repo / "reports" / "ablation_runs.csv")
    assert {"full-s0", "gan_alone-s0"} <= set(runs_csv["run"])
    assert (repo / "reports" / "ablation_lambda_cycle.png").exists() and (repo / "reports" / "ablation_losses.png").exists()


def test_the_multimodal_study_compares_models_on_realism_and_diversity():
    cmds = ablations.exp_commands(["pix2pix_noise", "bicyclegan"], [0], [], study="multimodal")
    assert cmds[0][5:] == ["pix2pix_noise-s0", "-S", "model=bicyclegan", "-S", "bicyclegan.variant=pix2pix_noise",
                           "-S", "seed=0", "-S", "mlflow.study=multimodal", "-S", "mlflow.config=pix2pix_noise"]
    rows = [{"run": f"{c}-s0", "run_id": "x", "seed": "0", "config": c, **{k: None for k in report.KNOBS},
             "model": m, "bicyclegan.variant": v, "fid_AtoB": fid, "diversity_l1_AtoB": div}
            for c, m, v, fid, div in (("pix2pix", "pix2pix", None, 200.0, None),
                                      ("bicyclegan", "bicyclegan", "bicyclegan", 210.0, 0.05))]
    md = report.markdown(report.aggregate(pd.DataFrame(rows)), "multimodal")
    assert md.splitlines()[0] == "| config | model | variant | n | fid_AtoB | diversity_l1_AtoB |"
    assert "**200.000 ± 0.000**" in md and "**0.050 ± 0.000**" in md  # lower FID, higher diversity is better
