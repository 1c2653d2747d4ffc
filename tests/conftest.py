"""Shared fixtures: the repository's own params.yaml, shrunk and redirected into a temp folder."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.config import Params, parse_params

REPO = Path(__file__).resolve().parents[1]


def repo_params_dict() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def set_key(d: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        d = d[p]
    d[last] = value


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """One sqlite store for the whole session (creating its tables costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def shrink(d: dict) -> dict:
    """Tiny data and networks: a training step takes milliseconds."""
    d["data"]["synthetic"].update(n_train_a=6, n_train_b=5, n_test=4, image_size=32)
    d["prepare"].update(load_size=32, min_size=16)
    d["cyclegan"].update(ngf=4, ndf=4)
    d["pix2pix"].update(ngf=4, ndf=4, generator="unet_32")
    d["bicyclegan"].update(ngf=4, ndf=4, nef=4, generator="unet_32")
    d["train"].update(crop_size=32, n_epochs=1, n_epochs_decay=1, checkpoint_every=3, log_every=2, device="cpu")
    d["translate"].update(device="cpu")
    d["evaluator"].update(width=4, epochs=2, device="cpu")
    d["evaluate"].update(device="cpu", kid_subsets=10)
    return d


@pytest.fixture
def params_dict(tmp_path: Path, mlflow_uri: str) -> dict:
    """params.yaml, shrunk, with every path inside tmp_path."""
    d = shrink(copy.deepcopy(repo_params_dict()))
    d["paths"] = {k: str(tmp_path / v) for k, v in d["paths"].items()}
    d["mlflow"]["tracking_uri"] = mlflow_uri
    return d


@pytest.fixture
def make_params(params_dict):
    def make(**overrides) -> Params:
        d = copy.deepcopy(params_dict)
        for k, v in overrides.items():
            set_key(d, k.replace("__", "."), v)
        return parse_params(d)
    return make


@pytest.fixture
def prepared(make_params):
    """A factory: params with the tiny synthetic dataset already downloaded and prepared."""
    from pipeline.stages import download, prepare

    def make(**overrides) -> Params:
        p = make_params(**overrides)
        download.run(p.data, Path(p.paths.raw), progress=False)
        prepare.run(p, progress=False)
        return p
    return make
