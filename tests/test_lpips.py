"""LPIPS code path with a fixture backbone, and the offline 'unavailable' report."""

import pytest
import torch

from pipeline.errors import ConfigError, Unavailable
from pipeline.metrics import perceptual


def test_lpips_runs_with_a_backbone_file_and_labels_it_non_standard(fixture_backbone):
    model, protocol = perceptual.load_lpips(str(fixture_backbone), torch.device("cpu"))
    assert "NON-STANDARD" in protocol["network"] and protocol["backbone"] == str(fixture_backbone)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    y = torch.rand(3, 3, 64, 64, generator=g) * 2 - 1
    same = perceptual.lpips_distances(model, x, x, 2, torch.device("cpu"))
    diff = perceptual.lpips_distances(model, x, y, 2, torch.device("cpu"))
    assert same.shape == (3,) and torch.allclose(same, torch.zeros(3), atol=1e-6)
    assert (diff > 0).all()
    # the backbone really is the file's: its first conv equals the saved weights
    saved = torch.load(fixture_backbone, weights_only=True)
    assert torch.equal(model.net.slice1[0].weight, saved["features.0.weight"])


def test_without_the_backbone_lpips_is_unavailable_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(Unavailable, match=r"place alexnet-owt-7be5be79.pth at .*hub/checkpoints/alexnet-owt-7be5be79.pth"):
        perceptual.load_lpips(None, torch.device("cpu"))


def test_a_configured_backbone_that_does_not_exist_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="evaluate.lpips_backbone=.*does not exist"):
        perceptual.load_lpips(str(tmp_path / "missing.pth"), torch.device("cpu"))
