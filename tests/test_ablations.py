"""The ablation sweep: plain -S overrides, queued DVC experiments in parallel workers, one MLflow
store, and the comparison table over seeds."""

import subprocess
import sys

import mlflow
import pandas as pd
import pytest
import torch
import yaml

from pipeline.config import flatten, to_dict
from pipeline.models.cut import setting as cut_setting
from pipeline.models.registry import MODELS
from pipeline.runtime import cpu_cores
from pipeline.studies import ablations, report
from tests.helpers import TINY, env, make_repo, run


def test_every_ablation_is_a_plain_override_set_that_pins_the_papers_protocol():
    cmds = ablations.exp_commands(["cycle_alone", "gan_alone"], [0, 1], ["train.n_epochs=2"])
    protocol = ["-S", "model=cyclegan", "-S", "lambda_cycle=10.0", "-S", "lambda_identity=0.0", "-S", "pool_size=50"]
    assert cmds[0] == ["dvc", "exp", "run", "--queue", "-n", "cycle_alone-s0", *protocol,
                       "-S", "cyclegan.adversarial=false", "-S", "cyclegan.cycle_forward=true",
                       "-S", "cyclegan.cycle_backward=true",
                       "-S", "train.n_epochs=2", "-S", "train.n_epochs_decay=2", "-S", "data.synthetic.n_test=200",
                       "-S", "evaluate.fid_protocols=tf",
                       "-S", "seed=0", "-S", "mlflow.study=ablation", "-S", "mlflow.config=cycle_alone",
                       "-S", "train.n_epochs=2"]
    assert [c[5] for c in cmds] == ["cycle_alone-s0", "gan_alone-s0", "cycle_alone-s1", "gan_alone-s1"]  # seed by seed
    assert "lambda_cycle=0.0" in cmds[1] and "lambda_cycle=10.0" not in cmds[1]  # a row's change wins over the protocol
    # every row sets the same knobs: none inherits one from the workspace
    pinned = {**ablations.PAPER_PROTOCOL, **ablations.ABLATION_PROTOCOL}  # the paper's and the measurement's protocol
    assert {frozenset(row) for row in ablations.ABLATIONS.values()} == {frozenset(pinned)}


def test_the_full_model_of_the_study_is_params_yaml_without_the_identity_loss(make_params):
    """The paper's Tables 4-5 ran without the identity loss; params.yaml keeps the authors' code default
    (0.5, for painting -> photo). That is the only model knob in which the study's full row differs from it; the
    rest is the study's measurement protocol (steps, test images, FID protocol)."""
    full, base = make_params(**overrides_of(ablations.ABLATIONS["full"])), make_params()
    flat, flat_base = flatten(to_dict(full)), flatten(to_dict(base))
    changed = {k for k in flat if flat[k] != flat_base[k]} - set(ablations.ABLATION_PROTOCOL)
    assert changed == {"lambda_identity"} and flat["lambda_identity"] == 0.0


# What each ablation of the registry switches off in the CycleGAN step: losses that must be exactly zero,
# and losses that must be absent. Every ablation needs a row (a new one fails until it has one).
SWITCHED_OFF = {
    "full": (["idt_A", "idt_B"], []),
    "gan_alone": (["cycle_A", "cycle_B", "idt_A", "idt_B"], []),
    "cycle_alone": (["G_A", "G_B", "idt_A", "idt_B"], ["D_A", "D_B"]),
    "gan_forward_cycle": (["cycle_B", "idt_A", "idt_B"], []),
    "gan_backward_cycle": (["cycle_A", "idt_A", "idt_B"], []),
    "identity": ([], []),
    "no_pool": (["idt_A", "idt_B"], []),
}


def overrides_of(config: dict) -> dict:
    """A row's `-S` values as DVC reads them (YAML: "null" is None) -> make_params keywords."""
    return {k.replace(".", "__"): yaml.safe_load(v) if isinstance(v, str) else v for k, v in config.items()}


@pytest.mark.parametrize("name", list(ablations.ABLATIONS))
def test_each_ablation_changes_only_its_knobs_and_switches_off_its_terms(make_params, name):
    p, full = make_params(**overrides_of(ablations.ABLATIONS[name])), make_params(**overrides_of(ablations.ABLATIONS["full"]))
    flat, flat_full = flatten(to_dict(p)), flatten(to_dict(full))
    assert {k for k in flat if flat[k] != flat_full[k]} == set(ablations.ABLATION_CHANGES[name])
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


@pytest.mark.parametrize("name", list(ablations.CUT_STUDY))
def test_each_cut_study_configuration_is_its_papers_setting(make_params, name):
    """CycleGAN as in the ablations; CUT and FastCUT as the authors' modes (the row sets the knobs a mode
    decides back to null); every row at batch 1, scored under CUT's FID protocol and torch-fidelity's."""
    p = make_params(**overrides_of(ablations.CUT_STUDY[name]))
    assert p.train.batch_size == 1 and p.evaluate.fid_protocols == "tf+legacy_pytorch"
    model = MODELS[p.model].build(p, torch.device("cpu"), 0)
    if name == "cyclegan":
        assert set(model.nets) == {"G_A", "G_B", "D_A", "D_B"} and p.lambda_identity == 0.0 and p.pool_size == 50
        return
    assert set(model.nets) == {"G", "D", "F"} and p.cut.mode == name
    assert tuple(cut_setting(p.cut, k) for k in ("lambda_nce", "nce_idt", "flip_equivariance")) == {"cut": (1.0, True, False),
                                                                       "fastcut": (10.0, False, True)}[name]


def _runs(values_by_config: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for config, values in values_by_config.items():
        for seed, v in enumerate(values):
            rows.append({"run": f"{config}-s{seed}", "run_id": "x", "seed": str(seed), "config": config,
                         **{k: "v" for k in report.KNOBS}, "lambda_cycle": "10.0",
                         "fcn_AtoB_pixel_acc": v, "fid_AtoB": 100 * v})
    return pd.DataFrame(rows)


def test_aggregate_over_seeds_with_a_students_t_interval():
    agg = report.aggregate(_runs({"full": [0.8, 0.6, 0.7], "gan_alone": [0.3, 0.5, 0.4]}))
    full = agg[agg.config == "full"].iloc[0]
    assert full["n"] == 3 and full["fcn_AtoB_pixel_acc_mean"] == pytest.approx(0.7)
    assert full["fcn_AtoB_pixel_acc_std"] == pytest.approx(0.1)  # sample standard deviation
    half = 4.302653 * 0.1 / 3 ** 0.5  # t_{0.975, 2} sd / sqrt(n)
    assert (full["fcn_AtoB_pixel_acc_lo"], full["fcn_AtoB_pixel_acc_hi"]) == pytest.approx((0.7 - half, 0.7 + half))
    assert "0.700 ± 0.100 [0.452, 0.948]" in report.markdown(agg)


def test_a_bounded_scores_interval_is_cut_to_its_range_and_fids_is_not():
    """Accuracies, IoU and SSIM are declared bounded (metrics/base.py Key.bounds): their seed intervals stay in range."""
    agg = report.aggregate(_runs({"full": [0.2, 0.99, 0.98]}))
    full = agg.iloc[0]
    assert full["fcn_AtoB_pixel_acc_hi"] == 1.0 and 0 <= full["fcn_AtoB_pixel_acc_lo"] < full["fcn_AtoB_pixel_acc_mean"]
    assert full["fid_AtoB_hi"] > 100  # FID (100 x the score here) keeps its plain t-interval
    assert report.declared("ssim_AtoB").bounds == (-1.0, 1.0) and report.declared("fid_AtoB").bounds is None


def test_the_best_is_marked_only_where_the_intervals_separate_it():
    separated = report.markdown(report.aggregate(_runs({"full": [0.80, 0.81, 0.82], "gan_alone": [0.30, 0.31, 0.32]})))
    assert "**0.810 ± 0.010 [0.785, 0.835]**" in separated   # higher FCN accuracy is better
    assert "**31.000 ± 1.000 [28.516, 33.484]**" in separated  # lower FID is better
    overlapping = report.markdown(report.aggregate(_runs({"full": [0.8, 0.6, 0.7], "gan_alone": [0.3, 0.5, 0.65]})))
    assert "**" not in overlapping.split("\n\n")[0]
    one_seed = report.markdown(report.aggregate(_runs({"full": [0.8], "gan_alone": [0.3]})))
    assert "**" not in one_seed.split("\n\n")[0] and "0.800 ± 0.000 |" in one_seed  # one seed: no interval, no call


def test_the_paper_comparison_ranks_rows_by_class_iou():
    rows = []
    for config, iou in (("full", 0.7), ("cycle_alone", 0.5), ("gan_alone", 0.6)):
        rows.append({"run": config, "run_id": "x", "seed": "0", "config": config, **{k: "v" for k in report.KNOBS},
                     **{f"fcn_{r}_{n}": iou for r in ("AtoB", "BtoA") for n in ("pixel_acc", "class_acc", "class_iou")}})
    text = report.paper_comparison(report.aggregate(pd.DataFrame(rows)))
    full = next(line for line in text.splitlines() if line.startswith("| full |"))
    cycle = next(line for line in text.splitlines() if line.startswith("| cycle_alone |"))
    # Table 4 class IoU among these three rows: full 0.11 (1st), GAN alone 0.08, cycle alone 0.02 (3rd)
    assert "0.52 / 0.17 / 0.11 | 1 / 1 |" in full and "0.22 / 0.07 / 0.02 | 3 / 3 |" in cycle


def test_a_study_refuses_a_workspace_whose_params_differ_from_the_committed_ones(tmp_path):
    repo = make_repo(tmp_path / "repo")
    assert ablations.workspace_drift("ablation", [], cwd=str(repo)) == []
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["lambda_cycle"] = 5.0              # pinned by every row: harmless
    params["train"]["lr"] = 0.0007            # inherited by every row: refused, named
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    drift = ablations.workspace_drift("ablation", [], cwd=str(repo))
    assert len(drift) == 1 and drift[0].startswith("train.lr (0.0007 vs ")
    assert ablations.workspace_drift("ablation", ["train.lr=0.0007"], cwd=str(repo)) == []  # explicit: allowed
    r = subprocess.run([sys.executable, "-m", "pipeline.studies.ablations", "--queue-only"], cwd=repo, env=env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "train.lr (0.0007 vs" in r.stderr and "git checkout params.yaml" in r.stderr
    assert "Queued" not in subprocess.run(["dvc", "queue", "status"], cwd=repo, env=env(), capture_output=True,
                                          text=True).stdout


@pytest.mark.slow  # two queued experiments on two workers, each every stage in its own processes (about 2 min)
def test_a_two_experiment_queue_lands_in_one_store_and_one_table(tmp_path):
    repo = make_repo(tmp_path / "repo")
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "baseline"], repo)
    tiny = [f"{k}={TINY[k]}" for k in ablations.ABLATION_PROTOCOL if k in TINY]  # the tiny run's steps and test images
    r = subprocess.run([sys.executable, "-m", "pipeline.studies.ablations", "--only", "full", "gan_alone", "--seeds", "0",
                        "-j", "2", "--set", *tiny], cwd=repo, env=env(), capture_output=True, text=True, timeout=1200)
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
                           "-S", "train.batch_size=1", "-S", "seed=0", "-S", "mlflow.study=multimodal",
                           "-S", "mlflow.config=pix2pix_noise"]
    # each row pins what defines it; BicycleGAN at the authors' batch of 2, split between its cycles
    assert "bicyclegan.variant=bicyclegan" in cmds[1] and "train.batch_size=2" in cmds[1]
    rows = [{"run": f"{c}-s0", "run_id": "x", "seed": "0", "config": c, **{k: None for k in report.KNOBS},
             "model": m, "bicyclegan.variant": v, "fid_AtoB": fid, "diversity_l1_AtoB": div}
            for c, m, v, fid, div in (("pix2pix", "pix2pix", None, 200.0, None),
                                      ("bicyclegan", "bicyclegan", "bicyclegan", 210.0, 0.05))]
    md = report.markdown(report.aggregate(pd.DataFrame(rows)), "multimodal")
    assert md.splitlines()[0] == "| config | model | variant | n | fid_AtoB | diversity_l1_AtoB |"
    assert "200.000 ± 0.000 |" in md and "0.050 ± 0.000 |" in md and "**" not in md.split("\n\n")[0]  # one seed: no call


def _cut_runs() -> pd.DataFrame:
    """A hand-made cut study: five seeds of each model. CUT's FID is clearly the best; the FCN-scores of
    CycleGAN and CUT overlap; CUT has no B -> A columns; the costs as a training logs them."""
    fid = {"cyclegan": 90.0, "cut": 60.0, "fastcut": 75.0}
    iou = {"cyclegan": 0.30, "cut": 0.31, "fastcut": 0.20}
    sizes = {"cyclegan": (2 * 100, 2 * 100 + 2 * 50), "cut": (100, 100 + 50 + 20), "fastcut": (100, 100 + 50 + 20)}
    rows = []
    for config, model in (("cyclegan", "cyclegan"), ("cut", "cut"), ("fastcut", "cut")):
        for seed, noise in enumerate([-0.02, -0.01, 0.0, 0.01, 0.02]):
            row = {"run": f"{config}-s{seed}", "run_id": "x", "seed": str(seed), "config": config,
                   **{k: None for k in report.KNOBS}, "model": model, "cut.mode": None if model == "cyclegan" else config,
                   "fid_legacy_pytorch_AtoB": fid[config] * (1 + noise), "fid_AtoB": fid[config] * (1 + noise) - 5,
                   "fcn_AtoB_class_iou": iou[config] + 2 * noise, "lpips_AtoB_truth": 0.4,
                   "model/generator_parameters": sizes[config][0], "model/parameters": sizes[config][1],
                   "train/seconds_per_step": {"cyclegan": 0.2, "cut": 0.15, "fastcut": 0.1}[config] + noise / 10,
                   "train/peak_rss_mb": 600.0}
            if model == "cyclegan":
                row.update({"fid_legacy_pytorch_BtoA": 50.0 + seed, "fcn_BtoA_class_iou": 0.5})
            rows.append(row)
    return pd.DataFrame(rows)


def test_the_cut_study_table_reads_scores_costs_and_the_papers_order_from_the_runs():
    from pipeline.studies import cut

    runs = _cut_runs()
    agg = report.aggregate(runs, cut.QUALITY_COLUMNS)
    md = report.markdown(agg, "cut")
    header, _, *rows = md.split("\n\n")[0].splitlines()
    assert header.startswith("| config | model | mode | n | fid_legacy_pytorch_AtoB | fid_AtoB | fcn_AtoB_class_iou |")
    row = {r.split(" | ")[0][2:]: r.split(" | ") for r in rows}
    assert row["cyclegan"][2] == "-" and row["fastcut"][2] == "fastcut"  # CycleGAN has no CUT mode
    assert row["cut"][3] == "5" and row["cut"][-1] == "- |" and row["cut"][-2] == "-"  # CUT translates A -> B only
    assert "**60.000 ± 0.949" in row["cut"][4]  # the intervals separate CUT's FID: marked best
    assert "**" not in row["cut"][6] and "**" not in row["cyclegan"][6]  # the class IoUs overlap: no best
    costs = cut.costs_table(report.aggregate(runs, list(cut.COSTS)))
    assert "| cut | 5 | 100 | 170 | 0.150 ± 0.002 | 600 |" in costs and "peak memory, MiB (process max RSS)" in costs
    assert "CUDA" not in costs  # a CPU study: no column for the kind of memory it did not measure
    compared = cut.paper_comparison(agg, report.aggregate(runs, list(cut.COSTS)))
    lines = {line.split(" | ")[0][2:]: line for line in compared.splitlines() if line.startswith("| ")}
    # FID: ours CUT 60 < FastCUT 75 < CycleGAN 90, the paper's 56.4 < 68.8 < 76.3: the same order
    assert "60.000 / 56.4 (1 / 1)" in lines["CUT"] and "90.000 / 76.3 (3 / 3)" in lines["CycleGAN"]
    # class IoU: ours CUT 0.31 > CycleGAN 0.30 > FastCUT 0.20; the paper's mAP 24.7 > 20.4 > 19.1
    assert "0.310 / 24.7 (1 / 1)" in lines["CUT"] and "0.200 / 19.1 (3 / 3)" in lines["FastCUT"]
    assert "0.100 / 0.15 (1 / 1)" in lines["FastCUT"]  # seconds per step: FastCUT the fastest in both
