"""BicycleGAN (Zhu et al. 2017b): networks, losses, training, samples, diversity."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.config import parse_params
from pipeline.data.datasets import batches
from pipeline.errors import ConfigError
from pipeline.metrics.math import sample_pairs
from pipeline.models.bicyclegan.model import BicycleGAN, build_bicyclegan
from pipeline.models.losses import gan_loss, kl_to_standard_normal
from pipeline.models.networks import build_net
from pipeline.stages import classifier, evaluate, ref_stats, segmenter, train, translate
from tests.helpers import elsewhere, interrupt_at_step, repo_params_dict, run_stages, same_weights

G_KW = dict(in_channels=3, out_channels=3, ngf=4, norm="instance", dropout=False, nz=8)


@pytest.mark.parametrize("where_add", ["input", "all"])
def test_the_generator_uses_z(where_add):
    torch.manual_seed(0)
    G = build_net("latent_generator", "unet_32", where_add=where_add, **G_KW)
    x, z1, z2 = torch.randn(2, 3, 32, 32), torch.randn(2, 8), torch.randn(2, 8)
    assert G(x, z1).shape == (2, 3, 32, 32)
    assert torch.equal(G(x, z1), G(x, z1))
    assert (G(x, z1) - G(x, z2)).abs().mean() > 1e-3
    first = G.downs[0][0].in_channels, G.downs[1][1].in_channels
    assert first == ((3 + 8, 4 + 8) if where_add == "all" else (3 + 8, 4))


def test_the_generator_refuses_sides_it_cannot_halve():
    G = build_net("latent_generator", "unet_32", where_add="input", **G_KW)
    with pytest.raises(ValueError, match="divisible by 32"):
        G(torch.randn(1, 3, 48, 40), torch.randn(1, 8))


@pytest.mark.parametrize("size", [32, 64, 128])
def test_the_encoder_gives_mean_and_log_variance_for_any_size(size):
    E = build_net("encoder", "resnet_128", in_channels=3, nz=8, nef=4, norm="instance")
    mu, logvar = E(torch.randn(3, 3, size, size))
    assert mu.shape == logvar.shape == (3, 8)


def test_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(5, 8), torch.ones(5, 8))
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean()
    assert torch.allclose(kl_to_standard_normal(mu, logvar), expected, atol=1e-5)
    assert kl_to_standard_normal(torch.zeros(2, 8), torch.zeros(2, 8)) == 0


def test_diversity_averages_every_pair_once():
    assert sample_pairs(4) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert sample_pairs(1) == []


def test_bicyclegan_needs_paired_data(make_params):
    with pytest.raises(ConfigError, match="model=bicyclegan needs paired training data.*horse2zebra"):
        make_params(model="bicyclegan", data__dataset="horse2zebra")


def test_every_loss_term_of_the_paper_is_trained(make_params):
    p = make_params(model="bicyclegan")
    torch.manual_seed(0)
    model = build_bicyclegan(p, torch.device("cpu"))
    assert set(model.nets) == {"G", "E", "D", "D2"}
    before = {k: [q.clone() for q in n.module.parameters()] for k, n in model.nets.items()}
    batch = {"A": torch.rand(2, 3, 32, 32) * 2 - 1, "B": torch.rand(2, 3, 32, 32) * 2 - 1}
    losses = model.train_step(batch)
    assert set(losses) == {"G_GAN", "G_GAN2", "G_L1", "kl", "z_L1", "G", "D"}
    assert all(np.isfinite(v) for v in losses.values())
    for k, n in model.nets.items():  # every network took a step
        assert any(not torch.equal(a, b) for a, b in zip(before[k], n.module.parameters(), strict=True)), k


def test_the_authors_batch_split_and_two_scale_discriminators(make_params, monkeypatch):
    """Authors' defaults: D and D2 are the 70x70 PatchGAN at two scales (basic_256_multi, the second
    with half the filters on a 3x3-average-pooled image), the GAN losses summed over the scales; a batch
    of 2 is split: the cVAE-GAN cycle takes (A[0], B[0]), the cLR-GAN cycle generates from A[0] too, and
    D2 sees B[1] as its real image."""
    with pytest.raises(ConfigError, match="train.batch_size must be even, got 1; set train.batch_size=2"):
        make_params(model="bicyclegan", bicyclegan__batch_split=True)
    with pytest.raises(ConfigError, match="bicyclegan.discriminator=basic_multi .* train.crop_size must be >= 64, got 32"):
        make_params(model="bicyclegan", bicyclegan__discriminator="basic_multi")
    p = make_params(model="bicyclegan", bicyclegan__batch_split=True, train__batch_size=2,
                    bicyclegan__discriminator="basic_multi", data__synthetic__image_size=64, prepare__load_size=64,
                    train__crop_size=64)
    model = build_bicyclegan(p, torch.device("cpu"))
    D = model.raw("D")
    with torch.no_grad():
        out = D(torch.rand(1, 3, 64, 64))
    assert [o.shape[-1] for o in out] == [6, 2] and len(D.scales) == 2
    assert D.scales[1].model[0].out_channels == D.scales[0].model[0].out_channels // 2
    assert float(gan_loss(out, True, "lsgan")) == pytest.approx(sum(float(gan_loss(o, True, "lsgan")) for o in out))
    seen = {}
    for k in ("G", "D", "D2"):
        net = model.raw(k)
        net.register_forward_pre_hook(lambda m, args, k=k: seen.setdefault(k, []).append(args[0].detach().clone()))
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    losses = model.train_step({"A": a, "B": b})
    assert all(np.isfinite(v) for v in losses.values())
    assert all(torch.equal(x, a[:1]) for x in seen["G"])  # both cycles generate from the first half's A
    d2_inputs = [x for x in seen["D2"] if x.shape[0] == 1]
    assert any(torch.equal(x, b[1:]) for x in d2_inputs)       # D2's real image: the second half's B
    assert not any(torch.equal(x, b[1:]) for x in seen["D"])   # D's real image is B[0]
    assert any(torch.equal(x, b[:1]) for x in seen["D"])


def test_the_split_batch_skips_a_short_last_batch_and_trains_past_the_first_epoch(prepared):
    """5 training pairs at a batch of 2 split between the cycles: the last batch of each epoch would hold
    one pair and leave the cVAE-GAN half empty (every loss NaN); it is skipped, as in the authors' loop."""
    p = prepared(model="bicyclegan", bicyclegan__batch_split=True, train__batch_size=2)
    assert batches(5, 2, drop_last=True) == [[0, 1], [2, 3]] and batches(5, 2) == [[0, 1], [2, 3], [4]]
    result = train.train(p, progress=False)
    assert result["steps"] == 4  # 2 full batches x 2 epochs
    history = (Path(p.paths.train_reports) / "losses.csv").read_text().splitlines()
    assert history[-1].split(",")[:2] == ["4", "2"]  # the last row: step 4, in epoch 2


def test_pix2pix_noise_baseline_has_no_encoder(make_params):
    p = make_params(model="bicyclegan", bicyclegan__variant="pix2pix_noise")
    model = build_bicyclegan(p, torch.device("cpu"))
    assert set(model.nets) == {"G", "D"} and model.generators == ("G",)
    losses = model.train_step({"A": torch.rand(1, 3, 32, 32) * 2 - 1, "B": torch.rand(1, 3, 32, 32) * 2 - 1})
    assert set(losses) == {"G_GAN", "G_L1", "G", "D"}


@pytest.mark.long
def test_bicyclegan_resumes_translates_samples_and_reports_diversity(prepared, tmp_path, caplog, fixture_backbone):
    full = prepared(model="bicyclegan", **elsewhere(tmp_path, "full"))
    train.train(full, progress=False)
    cut = prepared(model="bicyclegan", **elsewhere(tmp_path, "cut"))
    with interrupt_at_step(BicycleGAN, 5), pytest.raises(KeyboardInterrupt):
        train.train(cut, progress=False)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        train.train(cut, progress=False)
    assert "resuming from step 3" in caplog.text
    assert same_weights(full.paths.model, cut.paths.model)  # the z draws are resumed too

    info = translate.run(full, progress=False)
    out = Path(full.paths.translated)
    assert info["counts"] == {"AtoB": 4, "samples": 20, "AtoB_encoded": 4}
    assert info["samples"] == {"folder": "samples", "n_samples": 5, "nz": 8, "seed": 0}

    def load(f):
        return np.asarray(Image.open(f), dtype=np.int16)
    for f in sorted((out / "AtoB").glob("*.png")):
        assert np.array_equal(load(f), load(out / "samples" / "00" / f.name))
        outputs = [load(out / "samples" / f"{k:02d}" / f.name) for k in range(5)]
        for i, j in sample_pairs(5):  # different codes, different images
            assert np.abs(outputs[i] - outputs[j]).max() > 0, (f.name, i, j)
    assert (out / "AtoB_encoded" / "00000.png").exists()

    ref_stats.run(full)
    segmenter.run(full, progress=False)
    classifier.run(full, progress=False)
    p = prepared(model="bicyclegan", evaluate__lpips_backbone=str(fixture_backbone), **elsewhere(tmp_path, "full"))
    metrics = evaluate.run(p)
    assert metrics["diversity_l1_AtoB"] > 0 and metrics["diversity_lpips_AtoB"] > 0
    assert isinstance(metrics["fid_AtoB"], float) and isinstance(metrics["l1_AtoB"], float)
    assert "BtoA" not in " ".join(metrics)
    assert 0 < metrics["latent_l1_AtoB"] < 5 and 0 < metrics["latent_chance_l1"] < 5
    latent = torch.load(out / "latent.pt", weights_only=True)  # what the latent metric is computed from
    assert latent["codes"].shape == latent["recovered"].shape == (5, 4, 8)


@pytest.mark.slow
def test_the_encoder_recovers_z_better_than_chance_on_the_embedded_dataset(params_dict):
    """The default embedded configuration at the authors' batch of 2, split between the cycles (64px,
    800 steps): E(G(A, z)) must be closer to z than to the code of another input (chance)."""
    d = repo_params_dict()
    d.update(model="bicyclegan", paths=params_dict["paths"], mlflow=params_dict["mlflow"])
    d["train"]["batch_size"] = 2
    p = parse_params(d)
    metrics = run_stages(p)["evaluate"]
    assert metrics["latent_l1_AtoB"] < metrics["latent_chance_l1"], metrics
