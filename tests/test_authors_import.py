"""The authors' published generators load into ours and give their outputs (tests/fixtures/authors:
tiny files made with the authors' own networks.py); files that do not fit are one clear error."""

from pathlib import Path

import pytest
import torch

from pipeline import authors
from pipeline.errors import StageError

FIXTURES = Path(__file__).parent / "fixtures" / "authors"


@pytest.fixture(scope="module")
def expected():
    return torch.load(FIXTURES / "expected.pt", weights_only=True)


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=0)


def test_cyclegan_resnet_generator_reproduces_their_output(expected):
    net, info = authors.load_generator(FIXTURES / "latest_net_G_A.pth")
    assert (info["name"], info["kwargs"]["ngf"], info["kwargs"]["norm"]) == ("resnet_6blocks", 4, "instance")
    with torch.no_grad():
        assert close(net(expected["G_A.input"]), expected["G_A.output"])


def test_legacy_instance_norm_keys_are_stripped_as_their_loader_does(expected, tmp_path):
    """Files trained with PyTorch 0.3 hold running stats for every InstanceNorm (here: 17 of them)."""
    state = torch.load(FIXTURES / "latest_net_G_A.pth", weights_only=True)
    norms = [f"model.{i}" for i in (2, 5, 8, 17, 20)] + [f"model.{b}.conv_block.{j}" for b in range(10, 16) for j in (2, 6)]
    for prefix in norms:
        c = state[f"{prefix.rsplit('.', 1)[0]}.{int(prefix.rsplit('.', 1)[1]) - 1}.weight"].shape[0]
        state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"] = torch.zeros(c), torch.ones(c)
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)
    torch.save(state, tmp_path / "legacy.pth")
    net, _ = authors.load_generator(tmp_path / "legacy.pth")
    with torch.no_grad():
        assert close(net(expected["G_A.input"]), expected["G_A.output"])


def test_pix2pix_unet_in_eval_and_train_mode(expected):
    net, info = authors.load_generator(FIXTURES / "latest_net_G.pth")
    assert (info["name"], info["kwargs"]["norm"]) == ("unet_32", "batch")
    with torch.no_grad():
        assert close(net(expected["G.input"]), expected["G.output_eval"])
        net.train()  # the pix2pix paper's test-time mode: batch statistics (no Dropout at 5 levels)
        assert close(net(expected["G.input"]), expected["G.output_train_nodropout"])


def test_bicyclegan_generator_and_encoder(expected):
    G, info = authors.load_generator(FIXTURES / "bicyclegan_latest_net_G.pth")
    assert (info["name"], info["nz"], info["kwargs"]["where_add"]) == ("unet_64", 2, "all")
    E, size = authors.load_encoder(FIXTURES / "bicyclegan_latest_net_E.pth")
    assert size == 128
    with torch.no_grad():
        assert close(G(expected["bicycle_G.input"], expected["bicycle_G.z"]), expected["bicycle_G.output"])
        mu, logvar = E(expected["bicycle_E.input"])
    assert close(mu, expected["bicycle_E.mu"]) and close(logvar, expected["bicycle_E.logvar"])


@pytest.mark.parametrize("file, flags, message", [
    ("latest_net_G_A.pth", {"arch": "resnet_9blocks"}, "missing (16): model.16.block.1.weight"),
    ("latest_net_G_A.pth", {"ngf": 8}, "shape mismatch (35): model.1.weight (4, 3, 7, 7) vs ours (8, 3, 7, 7)"),
    ("bicyclegan_latest_net_E.pth", {}, "not a network of the authors' code"),
    ("expected.pt", {}, "none of model.model.0.weight in the file"),
])
def test_a_file_that_does_not_fit_is_one_error_naming_the_keys(file, flags, message):
    with pytest.raises(StageError) as e:
        authors.load_generator(FIXTURES / file, **flags)
    assert message in str(e.value) and str(FIXTURES / file) in str(e.value) and "\n" not in str(e.value)


def test_not_a_torch_file_or_not_a_state_dict(tmp_path):
    (tmp_path / "x.pth").write_text("hello")
    with pytest.raises(StageError, match="not a PyTorch state dict"):
        authors.load_generator(tmp_path / "x.pth")
    torch.save({"format": 1, "model": "cyclegan", "nets": {}}, tmp_path / "ours.pth")  # a file of this pipeline
    with pytest.raises(StageError, match="expected a state dict of tensors"):
        authors.load_generator(tmp_path / "ours.pth")
