"""Fixtures: the repository's params.yaml shrunk to the TINY configuration (tests/helpers.py) and
redirected into a temp folder; the stage chain on it; an LPIPS backbone file; an offline hub cache."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch
import torchvision

from pipeline.config import Params, parse_params
from pipeline.runtime import CONCURRENCY_ENV, configure_threads
from tests.helpers import STAGES, long_first, prepared_from_cache, run_stages, set_key, tiny_params_dict


def pytest_configure(config):
    """Under pytest-xdist (pyproject: `-n auto`), each worker process is one of the processes sharing the cores:
    its own torch and BLAS threads, and every stage it runs in process or in a child (dvc repro), take
    cores // workers threads (pipeline/runtime.py), so that the workers do not oversubscribe the machine."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        os.environ.setdefault(CONCURRENCY_ENV, workers)
        configure_threads("auto", f"pytest-xdist worker {os.environ.get('PYTEST_XDIST_WORKER')}")

@pytest.hookimpl(trylast=True)  # after `-m 'not slow'` has deselected: the shares are of what runs
def pytest_collection_modifyitems(config, items):
    """The `long` tests first in each pytest-xdist worker's share (tests.helpers.long_first)."""
    items[:] = long_first(items, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")),
                          lambda item: item.get_closest_marker("long") is not None)


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """One sqlite store for the whole session (creating its tables costs seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture
def params_dict(tmp_path: Path, mlflow_uri: str) -> dict:
    """params.yaml with the TINY configuration, every path inside tmp_path."""
    d = tiny_params_dict()
    d["paths"] = {k: str(tmp_path / v) for k, v in d["paths"].items()}
    d["mlflow"]["tracking_uri"] = mlflow_uri
    return d


@pytest.fixture
def make_params(params_dict):
    """A factory: params with overrides given as keyword arguments, `__` for the dots."""
    def make(**overrides) -> Params:
        d = copy.deepcopy(params_dict)
        for k, v in overrides.items():
            set_key(d, k.replace("__", "."), v)
        return parse_params(d)
    return make


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """The embedded world's downloaded and prepared folders, made once per configuration and worker."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture
def chain(make_params, data_cache):
    """A factory: params with overrides, after running the stages from download up to `last`. The embedded
    datasets' download and prepare run once per data configuration (tests.helpers.prepared_from_cache); every
    test gets its own copy of their outputs."""
    def make(last: str = "record", **overrides) -> tuple[Params, dict]:
        p = make_params(**overrides)
        if STAGES.index(last) < STAGES.index("prepare") or not prepared_from_cache(p, data_cache):
            return p, run_stages(p, "download", last)
        return p, run_stages(p, "train", last)
    return make


@pytest.fixture
def prepared(chain):
    """A factory: params with the tiny synthetic dataset already downloaded and prepared."""
    def make(**overrides) -> Params:
        return chain("prepare", **overrides)[0]
    return make


@pytest.fixture
def no_lpips_backbone(tmp_path, monkeypatch):
    """Offline, as here and in CI: no torchvision AlexNet weights in the hub cache."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))


@pytest.fixture
def fixture_backbone(tmp_path):
    """A randomly initialised AlexNet saved like torchvision's file (NOT the ImageNet weights)."""
    torch.manual_seed(0)
    path = tmp_path / "alexnet-fixture.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path
