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


@pytest.fixture
def params_dict(tmp_path: Path) -> dict:
    """params.yaml with tiny data and every path inside tmp_path."""
    d = copy.deepcopy(repo_params_dict())
    d["data"]["synthetic"].update(n_train_a=6, n_train_b=5, n_test=4, image_size=32)
    d["prepare"].update(load_size=32, min_size=16)
    d["paths"] = {k: str(tmp_path / v) for k, v in d["paths"].items()}
    return d


@pytest.fixture
def make_params(params_dict):
    def make(**overrides) -> Params:
        d = copy.deepcopy(params_dict)
        for k, v in overrides.items():
            set_key(d, k.replace("__", "."), v)
        return parse_params(d)
    return make
