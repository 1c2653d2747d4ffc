"""StarGAN (Choi et al. 2018) and the multi-domain world: networks, each loss term, the n_critic
schedule, resuming, the k-domain evaluation and its classification accuracy, the translate command."""

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import checkpoint
from pipeline.data import synthetic
from pipeline.data.synthetic import domain_count
from pipeline.domains import AtoB, BtoA, Route, one_hot
from pipeline.errors import ConfigError
from pipeline.metrics import classification, registry
from pipeline.metrics.evaluation import route_means, summary
from pipeline.metrics.keys import MetricKey
from pipeline.models.losses import gan_loss, gradient_penalty
from pipeline.models.networks import build_net
from pipeline.models.stargan.model import StarGAN, build_stargan, classification_loss, is_generator_step
from pipeline.stages import train
from pipeline.tools import translate as translate_tool
from pipeline.training import RunBook
from tests.helpers import elsewhere, interrupt_at_step, run_stages, same_weights

MULTI = {"model": "stargan", "data__dataset": "synthetic_multi"}


# --- networks -----------------------------------------------------------------------------------

def test_the_generator_takes_the_target_label_as_extra_input_channels():
    torch.manual_seed(0)
    G = build_net("conditional_generator", "stargan_6blocks", in_channels=3, out_channels=3, n_domains=4, ngf=4)
    assert G.model[0].in_channels == 3 + 4  # the label replicated spatially and concatenated (Sec. 3)
    x = torch.randn(2, 3, 32, 32)
    c1, c2 = one_hot(torch.tensor([0, 1]), 4), one_hot(torch.tensor([2, 3]), 4)
    assert G(x, c1).shape == (2, 3, 32, 32)
    assert (G(x, c1) - G(x, c2)).abs().mean() > 1e-4
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in G.modules()) == 2 * 6 + 5  # 6 residual blocks


def test_the_discriminator_has_a_patch_head_and_a_domain_head_without_normalisation():
    D = build_net("classifying_discriminator", "stargan", in_channels=3, n_domains=4, ndf=4, n_layers=5,
                  image_size=64)
    src, cls = D(torch.randn(3, 3, 64, 64))
    assert src.shape == (3, 1, 2, 2) and cls.shape == (3, 4)  # 64 / 2^5 = 2: the authors' 2x2 map at 128 / 2^6
    assert not any(isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d)) for m in D.modules())
    assert {m.negative_slope for m in D.modules() if isinstance(m, torch.nn.LeakyReLU)} == {0.01}
    with pytest.raises(ValueError, match="divisible by 64"):
        build_net("classifying_discriminator", "stargan", in_channels=3, n_domains=4, ndf=4, n_layers=6, image_size=96)


# --- loss terms on known tensors ---------------------------------------------------------------------

def test_the_adversarial_terms_are_wasserstein_critic_means():
    scores = torch.tensor([[1.0, 3.0], [-2.0, 6.0]])
    assert gan_loss(scores, True, "wgangp") == -2.0   # -E[D_src(x)]
    assert gan_loss(scores, False, "wgangp") == 2.0   # E[D_src(G(x, c))]


def test_the_gradient_penalty_of_a_linear_critic_is_known():
    """D_src(x) = <w, x> has gradient w everywhere: penalty = lambda_gp (||w|| - 1)^2 at any interpolate."""
    w = torch.full((1, 3, 2, 2), 0.5)  # ||w|| = sqrt(12) / 2
    critic = lambda x: (x * w).sum(dim=(1, 2, 3))  # noqa: E731
    real, fake = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    expected = 10 * (12 ** 0.5 / 2 - 1) ** 2
    assert gradient_penalty(critic, real, fake, 10.0).item() == pytest.approx(expected, rel=1e-6)


def test_the_classification_term_is_the_cross_entropy_of_the_domain_logits():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    expected = (-(torch.tensor(2.0) - torch.log(torch.exp(torch.tensor(2.0)) + 2)) + np.log(3)) / 2
    assert classification_loss(logits, torch.tensor([0, 2])).item() == pytest.approx(float(expected), rel=1e-6)
    assert torch.equal(one_hot(torch.tensor([2, 0]), 3), torch.tensor([[0.0, 0, 1], [1, 0, 0]]))


def _model(make_params, **overrides):
    return build_stargan(make_params(**MULTI, **overrides), torch.device("cpu"))


def test_the_objective_is_the_papers_weighted_sum(make_params):
    """L_D = -L_adv + lambda_cls L_cls^r (Eq. 6, WGAN-GP of Eq. 8); L_G = L_adv + lambda_cls L_cls^f + lambda_rec L_rec."""
    m = _model(make_params, stargan__n_critic=1, stargan__lambda_cls=2.0, stargan__lambda_rec=3.0)
    torch.manual_seed(0)
    losses = m.train_step({"image": torch.randn(2, 3, 32, 32), "domain": torch.tensor([0, 3])})
    assert losses["D"] == pytest.approx(losses["D_real"] + losses["D_fake"] + 2 * losses["D_cls"] + losses["D_gp"],
                                        rel=1e-5)
    assert losses["G"] == pytest.approx(losses["G_fake"] + 2 * losses["G_cls"] + 3 * losses["G_rec"], rel=1e-5)


def test_the_reconstruction_is_translated_back_with_the_source_label(make_params, monkeypatch):
    """L_rec = ||x - G(G(x, c), c')||_1: G's second call gets the original domain c'."""
    m = _model(make_params, stargan__n_critic=1)
    labels = []
    real_forward = m.raw("G").forward
    monkeypatch.setattr(m.raw("G"), "forward", lambda x, c: labels.append(c.argmax(1).tolist()) or real_forward(x, c))
    m.train_step({"image": torch.randn(3, 3, 32, 32), "domain": torch.tensor([0, 1, 2])})
    # the D step's translation, then G's translation and its reconstruction
    assert labels[0] == labels[1] and labels[2] == [0, 1, 2]


def test_g_is_updated_once_every_n_critic_d_updates(make_params):
    assert [is_generator_step(i, 5) for i in range(10)] == [False] * 4 + [True] + [False] * 4 + [True]
    m = _model(make_params, stargan__n_critic=3)
    batch = {"image": torch.randn(1, 3, 32, 32), "domain": torch.tensor([1])}

    def snapshot(name):
        return [p.detach().clone() for p in m.raw(name).parameters()]
    changed = []
    for _ in range(6):
        g, d = snapshot("G"), snapshot("D")
        losses = m.train_step(batch)
        changed.append((not all(torch.equal(a, b) for a, b in zip(g, snapshot("G"), strict=True)),
                        not all(torch.equal(a, b) for a, b in zip(d, snapshot("D"), strict=True)), "G" in losses))
    assert changed == [(False, True, False), (False, True, False), (True, True, True)] * 2
    assert m.state_dict()["iteration"] == 6


def test_a_logged_row_averages_each_loss_over_the_steps_that_computed_it():
    book = RunBook()
    book.record({"D": 1.0}, 0, 1e-4, 3, 99)
    book.record({"D": 2.0, "G": 5.0}, 0, 1e-4, 3, 99)
    row = book.record({"D": 3.0}, 0, 1e-4, 3, 99)
    assert row["D"] == 2.0 and row["G"] == 5.0


# --- config -------------------------------------------------------------------------------------------

def test_two_domain_models_need_two_domains_and_domains_need_the_multi_domain_world(make_params):
    with pytest.raises(ConfigError, match="translates between two domains.*data.domains=\\[day,dusk\\]"):
        make_params(data__dataset="synthetic_multi")
    assert domain_count(make_params(data__dataset="synthetic_multi", data__domains=["day", "dusk"]).data) == 2
    with pytest.raises(ConfigError, match="data.domains selects domains of a multi-domain dataset"):
        make_params(data__domains=["day", "dusk"])
    with pytest.raises(ConfigError, match="data.domains\\[1\\]: 'night' is not allowed"):
        make_params(**MULTI, data__domains=["day", "night"])
    with pytest.raises(ConfigError, match="names an item twice"):
        make_params(**MULTI, data__domains=["day", "day"])
    with pytest.raises(ConfigError, match="crop_size must be divisible by 64"):
        make_params(**MULTI, stargan__n_layers_d=6)
    with pytest.raises(ConfigError, match="needs paired training data"):
        make_params(model="pix2pix", data__dataset="synthetic_multi", data__domains=["label", "day"])
    assert domain_count(make_params(model="stargan").data) == 2  # StarGAN on the two-domain world: k = 2


# --- the multi-domain world --------------------------------------------------------------------------

def test_the_multi_domain_world_renders_one_scene_in_every_domain():
    seed = synthetic.scene_seed(0, "test", 7)
    labels = {c: synthetic.make_scene(seed, 32, c)[0] for c in synthetic.CONDITIONS}
    photos = {c: synthetic.make_scene(seed, 32, c)[1].astype(int) for c in synthetic.CONDITIONS}
    assert all(np.array_equal(labels["day"], v) for v in labels.values())  # one scene, paired across domains
    assert photos["dusk"].mean() < photos["day"].mean() - 30  # darker
    assert photos["fog"].std() < photos["day"].std()          # hazier
    # the day photo is the two-domain world's photo of the same scene
    assert np.array_equal(synthetic.make_scene(seed, 32)[1], photos["day"])


def test_prepare_maps_the_selected_domains_to_letters_in_order(prepared):
    p = prepared(data__dataset="synthetic_multi", data__domains=["fog", "label"])
    root = Path(p.paths.prepared)
    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["domains"] == {"A": "fog", "B": "label"} and manifest["label_domain"] == "B"
    assert manifest["labels"] == {"trainA": "trainA_labels", "testA": "testA_labels"}
    assert manifest["pairs"]["test"] == ["testA", "testB"] and manifest["pairs"]["train"] is None
    raw = Path(p.paths.raw) / "synthetic_multi"
    assert (root / "testA" / "00001.png").read_bytes() == (raw / "test_fog" / "00001.png").read_bytes()
    # training scenes differ between domains (unpaired); test scenes are shared (paired)
    a, b = (np.asarray(Image.open(raw / f"train_{d}_labels" / "00000.png")) for d in ("day", "fog"))
    assert not np.array_equal(a, b)


# --- training, resuming, translating, evaluating ------------------------------------------------------

def test_stargan_resumes_to_the_same_weights(prepared, tmp_path, caplog):
    full = prepared(**MULTI, **elsewhere(tmp_path, "full"))
    train.train(full, progress=False)
    cut = prepared(**MULTI, **elsewhere(tmp_path, "cut"))
    with interrupt_at_step(StarGAN, 5), pytest.raises(KeyboardInterrupt):
        train.train(cut, progress=False)
    assert checkpoint.load(Path(cut.paths.checkpoints) / "latest.pt")["model"]["iteration"] == 3
    with caplog.at_level(logging.INFO, logger="pipeline"):
        result = train.train(cut, progress=False)
    assert "resuming from step 3" in caplog.text
    assert same_weights(full.paths.model, cut.paths.model)  # target labels and the n_critic phase are resumed
    assert result["steps"] == 2 * (6 + 5 * 3)  # 2 epochs over every domain's training images
    assert checkpoint.load(full.paths.model)["domains"] == dict(zip("ABCD", synthetic.MULTI_DOMAINS, strict=True))


@pytest.mark.long
def test_stargan_translates_every_pair_and_reports_each_and_their_mean(chain, fixture_backbone):
    p, out = chain(**MULTI, evaluate__lpips_backbone=str(fixture_backbone))
    routes = [f"{x}to{y}" for x in "ABCD" for y in "ABCD" if x != y]
    assert list(out["translate"]["counts"]) == routes
    metrics = out["evaluate"]
    for key in ("fid", "kid", "lpips_{}_input", "domain_acc"):
        for r in routes:
            assert f"{key}_{r}" in metrics or key.format(r) in metrics
    # FCN-score: into a photo domain by the segmenter, into the label maps by their colours, both for every route
    assert all(f"fcn_{r}_class_iou" in metrics for r in routes)
    assert {f"fcn_real_{d}_class_iou" for d in "BCD"} <= set(metrics)  # an upper bound per photo domain
    assert metrics["fid_mean"] == pytest.approx(np.mean([metrics[f"fid_{r}"] for r in routes]))
    assert metrics["domain_acc_mean"] == pytest.approx(np.mean([metrics[f"domain_acc_{r}"] for r in routes]))
    assert 0 <= metrics["domain_acc_real"] <= 1
    # the summary for `dvc metrics show` holds the means only, with their intervals beside them
    written = json.loads(Path(p.paths.metrics).read_text())
    assert set(written) == {"fid_mean", "kid_mean", "fcn_mean_class_iou", "domain_acc_mean"}
    intervals = json.loads((Path(p.paths.eval_reports) / "intervals.json").read_text())
    assert intervals["fid_mean"][0] < intervals["fid_mean"][1] and "domain_acc_mean" in intervals

    # the translate command: any target domain, by name or letter
    src = Path(p.paths.prepared) / "testB"
    dest = Path(p.paths.translated).parent / "own"
    translate_tool.main([str(src), "--model", p.paths.model, "--target", "dusk", "--out", str(dest / "dusk"),
                         "--no-progress"])
    translate_tool.main([str(src), "--model", p.paths.model, "--target", "C", "--out", str(dest / "C"),
                         "--no-progress"])
    a, b = (np.asarray(Image.open(dest / d / "00000.png")) for d in ("dusk", "C"))
    assert np.array_equal(a, b)
    assert np.array_equal(a, np.asarray(Image.open(Path(p.paths.translated) / "BtoC" / "00000.png")))
    with pytest.raises(SystemExit):
        translate_tool.main([str(src), "--model", p.paths.model, "--target", "night", "--out", str(dest / "x")])
    with pytest.raises(SystemExit):  # a multi-domain model needs its target
        translate_tool.main([str(src), "--model", p.paths.model, "--out", str(dest / "x")])


@pytest.mark.parametrize("name, template", [("fid_CtoD", "fid_AtoB"), ("fcn_mean_class_iou", "fcn_AtoB_class_iou"),
                                            ("kid_DtoA_std", "kid_AtoB_std"),
                                            ("fcn_real_C_class_iou", "fcn_real_class_iou")])
def test_keys_of_any_route_share_their_declared_keys_role(name, template):
    name, template = MetricKey.parse(name), MetricKey.parse(template)
    assert registry.template(name) == template
    k = registry.key(name)
    assert k.key == name and k.better == registry.key(template).better
    assert registry.key(MetricKey.parse("fid_mean")).summary and not registry.key(MetricKey.parse("fid_CtoD")).summary
    assert summary({"fid_AtoB": 1.0, "fid_mean": 2.0}, multi_domain=True) == {"fid_mean": 2.0}
    assert summary({"fid_AtoB": 1.0, "fid_mean": 2.0}) == {"fid_AtoB": 1.0}


def test_a_mean_over_routes_needs_every_route():
    from pipeline.metrics.base import Result
    routes, k = [AtoB, BtoA], MetricKey.parse
    full = route_means([Result(k("fid_AtoB"), 1.0, {}), Result(k("fid_BtoA"), 3.0, {}), Result(k("kid_AtoB_std"), 1.0, {})],
                       routes)
    assert [(str(r.key), r.value) for r in full] == [("fid_mean", 2.0)]  # a spread has no mean
    assert full[0].protocol["mean_over"] == ["AtoB", "BtoA"]
    assert route_means([Result(k("fid_AtoB"), 1.0, {}), Result(k("fid_BtoA"), None, {}, reason="no")], routes) == []
    assert route_means([Result(k("fid_AtoB"), 1.0, {})], routes) == []  # a route without the score


# --- the classification accuracy on a hand-made case --------------------------------------------------

class ColourClassifier(torch.nn.Module):
    """Assigns an image to the domain of its strongest channel: red A, green B, blue C."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_the_classification_accuracy_counts_translations_landing_in_their_target(monkeypatch):
    def solid(rgb, n):
        return torch.tensor(rgb, dtype=torch.uint8)[None, :, None, None].expand(n, 3, 8, 8).clone()
    fakes = {AtoB: torch.cat([solid((0, 200, 0), 3), solid((200, 0, 0), 1)]),   # 3 of 4 green: 0.75
             Route("B", "C"): solid((0, 0, 200), 4)}                              # all blue: 1.0
    state = {"domains": {"A": "red", "B": "green", "C": "blue"}, "name": "colour", "trained_on": "hand-made",
             "resolution": 8, "upper_bound": 1.0, "upper_bound_n": 12, "upper_bound_by_domain": {}}
    monkeypatch.setattr(classification.classifier_file, "load", lambda path: (state, ColourClassifier()))
    ctx = SimpleNamespace(params=SimpleNamespace(paths=SimpleNamespace(classifier="unused")), size=8,
                          directions=lambda: list(fakes), fake=fakes.__getitem__,
                          names=lambda r: [f"{i}.png" for i in range(4)], domain_name=lambda f: state["domains"][f[-1]])
    results = {str(r.key): r for r in classification.domain_accuracy(ctx)}
    assert results["domain_acc_AtoB"].value == 0.75 and results["domain_acc_BtoC"].value == 1.0
    assert results["domain_acc_AtoB"].per_image == {"0.png": 1.0, "1.png": 1.0, "2.png": 1.0, "3.png": 0.0}
    assert results["domain_acc_real"].value == 1.0


# --- learning -------------------------------------------------------------------------------------------

@pytest.mark.slow  # a 30 s training; CycleGAN's learning test and the StarGAN chain stay in the default run
def test_a_short_training_learns_the_multi_domain_task(make_params, tmp_path):
    """Photos translated between day, dusk and fog get closer to the same scene's real photo in the target
    domain (the paired test set) than the inputs are: L1 to the ground truth falls below the identity's."""
    p = make_params(**MULTI, data__domains=["day", "dusk", "fog"], data__synthetic__n_train_b=40,
                    data__synthetic__n_test_multi=16, train__n_epochs=15, train__n_epochs_decay=10,
                    train__checkpoint_every=1000, stargan__ngf=8, stargan__ndf=8, stargan__g_lr=4e-4,
                    stargan__d_lr=4e-4, train__batch_size=4, **elsewhere(tmp_path, "run"))
    run_stages(p, "download", "translate")
    prepared, out = Path(p.paths.prepared), Path(p.paths.translated)

    def load(folder):
        return np.stack([np.asarray(Image.open(f), dtype=np.float64) for f in sorted(folder.glob("*.png"))])
    trained, identity = [], []
    for x in "ABC":
        for y in "ABC":
            if x != y:
                truth = load(prepared / f"test{y}")
                trained.append(np.abs(load(out / f"{x}to{y}") - truth).mean())
                identity.append(np.abs(load(prepared / f"test{x}") - truth).mean())
    assert np.mean(trained) < 0.8 * np.mean(identity), (trained, identity)


# --- a two-domain model on a pair of the multi-domain set (the study's CycleGAN per pair) ------------------

@pytest.mark.long
def test_cyclegan_on_a_pair_of_the_multi_domain_set_translates_between_their_letters(chain, fixture_backbone):
    p, out = chain(data__dataset="synthetic_multi", data__domains=["day", "dusk", "fog"], train__pair=["fog", "day"],
                   evaluate__lpips_backbone=str(fixture_backbone))
    assert list(out["translate"]["counts"]) == ["CtoA", "CtoAtoC", "AtoC", "AtoCtoA"]  # fog = C is its A, day = A its B
    metrics = out["evaluate"]
    assert {"fid_CtoA", "fid_AtoC", "domain_acc_CtoA", "fcn_AtoC_class_iou", "cycle_l1_C", "cycle_l1_A",
            "fid_mean", "domain_acc_mean"} <= set(metrics)
    assert "fid_AtoB" not in metrics
    # the same three-domain classifier and reference features as a StarGAN on this set would be scored with
    assert out["classifier"]["by_domain"].keys() == {"A", "B", "C"}
    model = checkpoint.load(p.paths.model)
    assert model["pair"] == ["C", "A"] and model["domains"] == {"A": "day", "B": "dusk", "C": "fog"}
    dest = Path(p.paths.translated).parent / "own"
    translate_tool.main([str(Path(p.paths.prepared) / "testC"), "--model", p.paths.model, "--direction", "CtoA",
                         "--out", str(dest), "--no-progress"])
    assert np.array_equal(np.asarray(Image.open(dest / "00000.png")),
                          np.asarray(Image.open(Path(p.paths.translated) / "CtoA" / "00000.png")))
    with pytest.raises(ConfigError, match="train.pair=\\['day', 'night'\\]|is not allowed"):
        chain("prepare", data__dataset="synthetic_multi", train__pair=["day", "night"])


def test_the_multidomain_tables_compare_the_families_per_pair_and_on_average():
    import pandas as pd

    from pipeline.studies import multidomain

    def run(model, config, seed, domains, metrics, seconds):
        return {"model": model, "config": config, "seed": seed, "data.domains": str(tuple(domains)),
                "model/parameters": 10, "model/generator_parameters": 4, "train/seconds": seconds, **metrics}
    names = ["day", "dusk", "fog"]
    star = {f"fid_{x}to{y}": 100.0 + seed for seed in (0,) for x in "ABC" for y in "ABC" if x != y}
    runs = [run("stargan", "stargan", s, names, {k: v + s for k, v in star.items()}, 60.0) for s in (0, 1)]
    for s in (0, 1):
        for x, y in (("A", "B"), ("A", "C"), ("B", "C")):
            runs.append(run("cyclegan", f"cyclegan_{x}{y}", s, names,
                            {f"fid_{x}to{y}": 200.0 + s, f"fid_{y}to{x}": 210.0 + s}, 100.0))
    runs = pd.DataFrame(runs)
    long = multidomain.long_table(runs)
    assert set(long["pair"]) == {"day → dusk", "dusk → day", "day → fog", "fog → day", "dusk → fog", "fog → dusk"}
    seeds = multidomain.per_seed(long, runs).set_index(["family", "seed"])
    assert seeds.loc[(multidomain.STARGAN, 1), "fid"] == 101.0
    assert seeds.loc[(multidomain.CYCLEGAN, 0), "fid"] == 205.0
    # one StarGAN against the sum of the three pair models
    assert seeds.loc[(multidomain.CYCLEGAN, 0), "train/seconds"] == 300.0
    assert seeds.loc[(multidomain.STARGAN, 0), "model/parameters"] == 10
    text, _ = multidomain.markdown(runs)
    assert "| FID ↓, mean over the pairs | 100.500 ± 0.707 [" in text and "| day → fog | 100.500 ± 0.707 / 200.500" in text
