"""The train and translate stages on the tiny embedded dataset."""

import logging
import math
from pathlib import Path

import mlflow
import pytest
import torch

from pipeline import checkpoint, tracking, training
from pipeline.config import logged_params
from pipeline.errors import StageError
from pipeline.models.cyclegan.model import CycleGAN, build_cyclegan
from pipeline.models.networks import build
from pipeline.stages import train, translate
from tests.helpers import elsewhere, interrupt_at_step, learning, same_weights


def test_same_params_give_the_same_weights(prepared, tmp_path):
    a = prepared(**elsewhere(tmp_path, "a"))
    b = prepared(**elsewhere(tmp_path, "b"))
    train.train(a, progress=False)
    train.train(b, progress=False)
    assert same_weights(a.paths.model, b.paths.model)
    c = prepared(seed=1, **elsewhere(tmp_path, "c"))
    train.train(c, progress=False)
    assert not same_weights(a.paths.model, c.paths.model)


def test_an_interrupted_run_resumes_to_the_same_weights(prepared, tmp_path, caplog):
    full = prepared(**elsewhere(tmp_path, "full"))
    full_run = train.train(full, progress=False)["mlflow_run_id"]
    # 12 steps in all (6 items x 2 epochs); checkpoints every 3; Ctrl-C in step 5
    cut = prepared(**elsewhere(tmp_path, "cut"))
    with interrupt_at_step(CycleGAN, 5), pytest.raises(KeyboardInterrupt):
        train.train(cut, progress=False)
    assert checkpoint.load(Path(cut.paths.checkpoints) / "latest.pt")["step"] == 3
    assert not Path(cut.paths.model).exists()
    with caplog.at_level(logging.INFO, logger="pipeline"):
        result = train.train(cut, progress=False)
    assert "resuming from step 3 of 12" in caplog.text
    assert result["steps"] == 12
    assert same_weights(full.paths.model, cut.paths.model)
    assert full_run != result["mlflow_run_id"]  # the interrupted run's own MLflow run went on, not the other's
    # the loss curve of the resumed run is the uninterrupted one
    assert (Path(full.paths.train_reports) / "losses.csv").read_text() == \
           (Path(cut.paths.train_reports) / "losses.csv").read_text()


def test_a_checkpoint_of_other_params_is_not_resumed(prepared, caplog):
    first = train.train(prepared(), progress=False)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        second = train.train(prepared(lambda_cycle=5.0), progress=False)
    assert "ignoring the checkpoint" in caplog.text and "resuming" not in caplog.text
    assert second["mlflow_run_id"] != first["mlflow_run_id"]


def test_the_final_checkpoint_rebuilds_the_generators_alone(prepared):
    p = prepared()
    train.train(p, progress=False)
    ckpt = torch.load(p.paths.model, weights_only=True)  # plain tensors and data: no pickled code
    assert set(ckpt["nets"]) == {"G_A", "G_B"}
    assert ckpt["config"]["lambda_cycle"] == 10.0 and ckpt["config"]["cyclegan"]["generator"] == "resnet_6blocks"
    spec = ckpt["nets"]["G_A"]["spec"]
    assert spec == {"role": "generator", "name": "resnet_6blocks",
                    "kwargs": {"in_channels": 3, "out_channels": 3, "ngf": 4, "norm": "instance", "dropout": False}}
    g = build(spec)
    g.load_state_dict(ckpt["nets"]["G_A"]["state_dict"])

    info = translate.run(p, progress=False)
    out = Path(p.paths.translated)
    inputs = sorted(f.name for f in (Path(p.paths.prepared) / "testA").iterdir())
    for folder in ("AtoB", "AtoBtoA", "BtoA", "BtoAtoB"):
        assert sorted(f.name for f in (out / folder).iterdir()) == inputs
    assert info["counts"] == {"AtoB": 4, "AtoBtoA": 4, "BtoA": 4, "BtoAtoB": 4}
    # what translate wrote is what the rebuilt generator computes
    from pipeline.data.datasets import load_tensor, to_image
    x = load_tensor(Path(p.paths.prepared) / "testA" / inputs[0]).unsqueeze(0)
    with torch.no_grad():
        expected = to_image(g.eval()(x)[0])
    assert (load_tensor(out / "AtoB" / inputs[0]) - load_tensor_from(expected)).abs().max() == 0


def load_tensor_from(arr):
    from PIL import Image

    from pipeline.data.datasets import to_tensor
    return to_tensor(Image.fromarray(arr))


def test_mlflow_run_holds_params_curves_and_artifacts(prepared, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "full-s0")
    p = prepared(mlflow__study="ablation", mlflow__config="full")
    result = train.train(p, progress=False)
    client = mlflow.MlflowClient(tracking_uri=p.mlflow.tracking_uri)
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "full-s0"
    assert run.data.params["lambda_cycle"] == "10.0" and run.data.params["cyclegan.generator"] == "resnet_6blocks"
    assert run.data.params["data.synthetic.seed"] == "0"
    # the tags that group runs: seeds of one configuration share `config`
    tags = run.data.tags
    assert (tags["study"], tags["config"], tags["seed"], tags["dvc.exp_name"]) == ("ablation", "full", "0", "full-s0")
    assert tags["git.rev"] and tags["pipeline.model"] == "cyclegan"
    # the experiment opens on its runs in MLflow 3's UI, not on the GenAI overview
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    history = client.get_metric_history(run.info.run_id, "train/G")
    assert [m.step for m in history] == [2, 4, 6, 8, 10, 12]  # log_every=2 over 12 steps
    assert {"train/cycle_A", "train/idt_B", "train/D_A", "train/lr"} <= set(run.data.metrics)
    # no copies of the curves' last points; the run's size and training time beside them
    assert not [k for k in run.data.metrics if not k.startswith(("train/", "model/"))]
    assert run.data.metrics["train/seconds"] > 0 and run.data.metrics["model/generator_parameters"] > 0
    # the costs a comparison of models reads (the cut study): per step, and this process's peak memory
    m = run.data.metrics
    assert m["train/seconds"] / 12 <= m["train/seconds_per_step"] < 1.5 * m["train/seconds"] / 12  # + the last grid
    assert m["train/peak_rss_mb"] > 100  # the interpreter and torch alone hold more
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"samples.png", "losses.csv", "checkpoint", "samples"} <= artifacts
    samples = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert samples == {"samples/epoch_001.png", "samples/epoch_002.png"}


def test_a_plain_run_carries_no_empty_labels(prepared, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    p = prepared(seed=3)
    tags = tracking.run_tags(p, None)
    assert tags["seed"] == "3" and not {"study", "dvc.exp_name"} & set(tags)
    assert all(tags.values())
    # outside a study the config is named by what the params change from the committed params.yaml
    assert "seed=3" in tags["config"].split()


@pytest.mark.parametrize("model, own, foreign", [
    ("cyclegan", {"cyclegan.ngf", "lambda_cycle", "lambda_identity", "pool_size"}, {"pix2pix.", "bicyclegan."}),
    ("pix2pix", {"pix2pix.lambda_l1"}, {"cyclegan.", "bicyclegan.", "lambda_cycle", "lambda_identity", "pool_size"}),
    ("bicyclegan", {"bicyclegan.lambda_kl", "bicyclegan.variant"}, {"cyclegan.", "pix2pix.", "lambda_cycle", "pool_size"}),
])
def test_a_run_logs_the_params_of_the_model_it_trains(make_params, model, own, foreign):
    logged = set(logged_params(make_params(model=model)))
    shared = {"seed", "model", "data.dataset", "data.synthetic.n_test", "prepare.load_size", "train.lr",
              "translate.batch_size", "segmenter.epochs", "evaluate.lpips_net"}
    assert own | shared <= logged
    assert not [k for k in logged if k.startswith(tuple(foreign)) or k.startswith(("mlflow.", "paths.", "data.local."))]


def test_a_run_on_a_local_folder_logs_its_settings_not_the_embedded_worlds(make_params):
    logged = set(logged_params(make_params(data__dataset="local")))
    assert {"data.local.path", "data.local.layout"} <= logged and not [k for k in logged if k.startswith("data.synthetic")]


def test_equal_checkpoints_are_equal_files(tmp_path):
    """torch.save names an archive's records after the file it writes: through a temporary file's
    random name, equal states would give files that differ (and a DVC output that always changes)."""
    state = {"w": torch.arange(4.0), "step": 3}
    checkpoint.save(tmp_path / "a.pt", state)
    checkpoint.save(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()


def test_a_non_finite_loss_stops_with_the_last_good_checkpoint_kept(prepared, monkeypatch):
    p = prepared()
    real_step = CycleGAN.train_step
    calls = {"n": 0}

    def exploding(self, batch):
        calls["n"] += 1
        losses = real_step(self, batch)
        return {**losses, "G": float("nan")} if calls["n"] == 5 else losses

    monkeypatch.setattr(CycleGAN, "train_step", exploding)
    with pytest.raises(StageError, match=r"non-finite loss at step 5: \{'G': nan\}.*checkpoint in .* is kept"):
        train.train(p, progress=False)
    assert checkpoint.load(Path(p.paths.checkpoints) / "latest.pt")["step"] == 3


def test_pix2pix_trains_on_pairs_and_translates_one_way(prepared):
    p = prepared(model="pix2pix")
    result = train.train(p, progress=False)
    assert result["steps"] == 10  # 5 pairs (trainB scenes) x 2 epochs
    info = translate.run(p, progress=False)
    assert info["counts"] == {"AtoB": 4}


def test_identity_weight_is_relative_to_lambda_cycle(make_params):
    """Authors' convention: identity term = lambda_identity * lambda_cycle * ||G(y) - y||_1."""
    batch = {"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1}
    out = {}
    for lc in (10.0, 5.0):
        torch.manual_seed(0)
        out[lc] = build_cyclegan(make_params(lambda_cycle=lc), torch.device("cpu")).train_step(batch)
    assert out[10.0]["idt_A"] == pytest.approx(2 * out[5.0]["idt_A"])
    assert out[10.0]["cycle_A"] == pytest.approx(2 * out[5.0]["cycle_A"])


@pytest.mark.long
def test_cyclegan_measurably_learns_the_embedded_task(make_params, tmp_path):
    """After 240 steps at 32px, G: labels -> photo lands far closer to the ground-truth photo than the
    untrained G, and closer to its own scene's photo than to another scene's (it follows the input)."""
    before, after, after_other_scene = learning(make_params, tmp_path, "G_A", cyclegan__ngf=8, cyclegan__ndf=8)
    assert after < 0.75 * before
    assert after < after_other_scene


def test_a_checkpoint_of_other_training_code_is_not_resumed(prepared, monkeypatch, caplog):
    p = prepared()
    train.train(p, progress=False)
    monkeypatch.setattr(training, "code_digest", lambda module: "edited training code")
    with caplog.at_level(logging.INFO, logger="pipeline"):
        train.train(p, progress=False)
    assert "ignoring the checkpoint" in caplog.text


def loss_curve(p) -> list[float]:
    import csv

    with open(Path(p.paths.train_reports) / "losses.csv") as f:
        return [float(row["G"]) for row in csv.DictReader(f)]


@pytest.mark.parametrize("overrides, tol", [
    pytest.param({"train__channels_last": True}, 5e-2, id="channels_last"),
    pytest.param({"train__fused_adam": True}, 5e-2, id="fused_adam"),
    pytest.param({"train__precision": "bf16"}, 5e-2, id="bf16"),
    pytest.param({"train__compile": True}, 5e-2, id="compile", marks=pytest.mark.slow),
])
def test_a_fast_path_keeps_the_loss_trajectory_of_fp32(prepared, tmp_path, overrides, tol):
    """Same seed and data: the logged generator loss stays within 5% (relative) of plain fp32 over all
    12 steps. The first step agrees to 1e-4 for float32 paths (tests/test_benchmark.py); after it, Adam
    moves each weight by ~lr * sign(gradient), so a reordered sum that flips a near-zero gradient's sign
    parts the trajectories (measured for channels_last: 3e-3 after one step, at most 9e-3 in 12)."""
    plain = {"train__fused_adam": False}  # the reference: no fast path at all
    ref = prepared(**plain, **elsewhere(tmp_path, "fp32"))
    fast = prepared(**{**plain, **overrides}, **elsewhere(tmp_path, "fast"))
    train.train(ref, progress=False)
    train.train(fast, progress=False)
    a, b = loss_curve(ref), loss_curve(fast)
    assert len(a) == len(b) == 6
    worst = max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True))
    assert worst <= tol, worst


def test_the_wgan_gp_objective_takes_a_step(make_params):
    torch.manual_seed(0)
    model = build_cyclegan(make_params(cyclegan__gan_mode="wgangp"), torch.device("cpu"))
    losses = model.train_step({"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1})
    assert all(math.isfinite(v) for v in losses.values()) and losses["cycle_A"] > 0
