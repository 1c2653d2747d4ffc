"""Where and how reproducibly a stage computes: device choice and determinism switches."""

from __future__ import annotations

import os

import torch

from pipeline.errors import ConfigError


def resolve_device(name: str, key: str) -> torch.device:
    """`auto` = CUDA when visible, else the CPU; `key` is the param that asked (for the error)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key}=cuda but no CUDA device is visible; set {key} to auto or cpu")
    return torch.device(name)


def set_determinism(seed: int, deterministic: bool) -> None:
    """Seed torch's global generator; with `deterministic`, ask for deterministic kernels."""
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by cuBLAS for determinism
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
